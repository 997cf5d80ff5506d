require ["date", "fileinto", "variables"];
if date :originalzone :matches "date" "iso8601" "*" { fileinto "date-${1}"; }
if date :originalzone :matches "resent-date" "iso8601" "*" { fileinto "resent-${1}"; }
if date :originalzone :matches "x-date-ut" "iso8601" "*" { fileinto "ut-${1}"; }
if date :originalzone :matches "x-date-comment" "iso8601" "*" { fileinto "comment-${1}"; }
if date :originalzone :matches "x-date-invalid" "iso8601" "*" { fileinto "invalid-${1}"; }
if date :originalzone :matches "x-date-military" "iso8601" "*" { fileinto "military-${1}"; }
if date :originalzone :matches "x-date-nozone" "iso8601" "*" { fileinto "nozone-${1}"; }
if date :originalzone :matches "x-date-lower" "iso8601" "*" { fileinto "lower-${1}"; }
if date :originalzone :matches "x-date-spaces" "iso8601" "*" { fileinto "spaces-${1}"; }
if date :originalzone :matches "x-date-leap" "iso8601" "*" { fileinto "leap-${1}"; }
if date :matches "x-date-spaces" "std11" "*" { fileinto "spaces-utc-${1}"; }
if date :zone "-1200" :matches "x-date-ut" "weekday" "*" { fileinto "ut-wd-${1}"; }
if date :originalzone :matches "received" "iso8601" "*" { fileinto "rcvd-${1}"; }
if date :index 2 :matches "received" "std11" "*" { fileinto "rcvd2-${1}"; }
if date :matches "x-date-semicolon" "date" "*" { fileinto "semi-${1}"; }
