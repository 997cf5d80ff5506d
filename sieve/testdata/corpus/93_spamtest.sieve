require ["spamtest", "relational", "comparator-i;ascii-numeric", "fileinto"];
if spamtest :value "eq" :comparator "i;ascii-numeric" "0" { fileinto "spam-untested"; }
if spamtest :value "ge" :comparator "i;ascii-numeric" "5" { fileinto "spam-5"; }
if spamtest :value "eq" :comparator "i;ascii-numeric" "5" { fileinto "spam-eq5"; }
if spamtest :value "lt" :comparator "i;ascii-numeric" "5" { fileinto "spam-under5"; }
