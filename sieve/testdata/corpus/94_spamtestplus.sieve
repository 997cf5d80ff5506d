require ["spamtestplus", "relational", "comparator-i;ascii-numeric", "fileinto", "variables"];
if spamtest :percent :value "ge" :comparator "i;ascii-numeric" "49" { fileinto "pct-49"; }
if spamtest :percent :value "eq" :comparator "i;ascii-numeric" "0" { fileinto "pct-0"; }
if spamtest :percent :matches "*" { fileinto "pct-${1}"; }
if spamtest :matches "*" { fileinto "val-${1}"; }
