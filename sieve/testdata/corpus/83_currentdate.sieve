require ["date", "relational", "fileinto", "variables"];
if currentdate :value "ge" "year" "2024" { fileinto "now-after-2024"; }
if currentdate :value "lt" "year" "2100" { fileinto "now-before-2100"; }
if currentdate :zone "+0000" :matches "zone" "*" { fileinto "zone-${1}"; }
if currentdate :zone "-0330" :is "zone" "-0330" { fileinto "zone-nl"; }
if currentdate :value "ge" "julian" "60000" { fileinto "julian"; }
