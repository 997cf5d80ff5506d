require ["subaddress", "envelope", "fileinto", "variables"];
if address :user "from" "jane" { fileinto "s01"; }
if address :detail "from" "sieve" { fileinto "s02"; }
if address :detail "to" "" { fileinto "s03"; }
if address :user "to" "kim" { fileinto "s04"; }
if envelope :detail "to" "work" { fileinto "s05"; }
if envelope :user :matches "to" "*" { fileinto "s06-${1}"; }
if envelope :detail :matches "from" "*" { fileinto "s07-${0}"; }
if address :detail :contains "cc" "" { fileinto "s08"; }
