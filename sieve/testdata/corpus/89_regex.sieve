require ["regex", "fileinto", "variables"];
if header :regex "subject" "^(re|fwd?): (.*)$" { fileinto "re-${2}"; }
if address :regex :domain "from" "^([a-z]+)\\.example\\.(com|net)$" { fileinto "dom-${1}-${2}"; }
if header :regex "x-number" "^0+([1-9][0-9]*)$" { fileinto "num-${1}"; }
if header :regex :comparator "i;octet" "subject" "MONEY" { fileinto "octet-money"; }
if header :regex "subject" "MONEY" { fileinto "casemap-money"; }
if header :regex "list-id" "<([^.]+)\\.(lists)\\." { fileinto "list-${1}"; }
if header :regex "subject" "[[:digit:]]{2}" { fileinto "two-digits"; }
if header :regex "x-stars" "^\\*{8}$" { fileinto "eight-stars"; }
if header :regex "subject" "(a|b)?c" { fileinto "opt-${1}-${0}"; }
if header :regex "from" "(x)|(e)" { fileinto "alt-${1}-${2}"; }
