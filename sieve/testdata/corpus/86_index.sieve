require ["date", "index", "fileinto", "variables"];
if header :index 2 :matches "x-tag" "*" { fileinto "tag2-${1}"; }
if header :index 1 :last :matches "x-tag" "*" { fileinto "taglast-${1}"; }
if header :index 5 :contains "x-tag" "a" { fileinto "tag5"; }
if address :index 2 :domain "to" "sub.example.org" { fileinto "to2-sub"; }
if address :index 1 :last :all :matches "cc" "*" { fileinto "cclast-${1}"; }
if header :index 2 :matches "received" "from *" { fileinto "rcv2-${1}"; }
if date :index 2 :matches "date" "zone" "*" { fileinto "date2-${1}"; }
if date :originalzone :index 1 :last :matches "date" "zone" "*" { fileinto "datelast-${1}"; }
if header :index 1 :matches "x-count" "*" { fileinto "count1-${1}"; }
if header :index 3 :matches ["subject", "received"] "*" { fileinto "multi3-${1}"; }
if address :index 2 :matches ["from", "cc"] "*" { fileinto "addr2-${1}"; }
