require ["date", "fileinto", "variables"];
if date :originalzone :matches "date" "iso8601" "*" { fileinto "orig-${1}"; }
if date :zone "+0530" :matches "date" "iso8601" "*" { fileinto "ist-${1}"; }
if date :zone "-1000" :matches "date" "std11" "*" { fileinto "hst-${1}"; }
if date :zone "+0000" :matches "date" "weekday" "*" { fileinto "wd-${1}"; }
if date :originalzone :matches "date" "zone" "*" { fileinto "oz-${1}"; }
