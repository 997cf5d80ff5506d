require ["date", "fileinto", "variables"];
if date :matches "date" "year" "*" { fileinto "y-${1}"; }
if date :matches "date" "month" "*" { fileinto "m-${1}"; }
if date :matches "date" "day" "*" { fileinto "d-${1}"; }
if date :matches "date" "date" "*" { fileinto "date-${1}"; }
if date :matches "date" "julian" "*" { fileinto "j-${1}"; }
if date :matches "date" "hour" "*" { fileinto "h-${1}"; }
if date :matches "date" "minute" "*" { fileinto "mi-${1}"; }
if date :matches "date" "second" "*" { fileinto "s-${1}"; }
if date :matches "date" "time" "*" { fileinto "t-${1}"; }
if date :matches "date" "iso8601" "*" { fileinto "iso-${1}"; }
if date :matches "date" "std11" "*" { fileinto "std-${1}"; }
if date :matches "date" "zone" "*" { fileinto "z-${1}"; }
if date :matches "date" "weekday" "*" { fileinto "w-${1}"; }
