require ["editheader", "index", "fileinto", "variables"];
deleteheader :index 1 "x-tag";
if header :index 1 :matches "x-tag" "*" { fileinto "first-now-${1}"; }
deleteheader :matches "x-number" "00*";
if header :matches "x-number" "*" { fileinto "number-${1}"; }
deleteheader :index 1 :last "x-count";
if header :matches "x-count" "*" { fileinto "count-${1}"; }
deleteheader :contains "to" "sub.example";
if header :matches "to" "*" { fileinto "to-${1}"; }
