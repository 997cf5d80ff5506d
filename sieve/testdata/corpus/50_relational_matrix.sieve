require ["relational", "comparator-i;ascii-numeric", "fileinto"];
if header :value "eq" :comparator "i;ascii-numeric" "x-number" "42" { fileinto "r01"; }
if header :value "gt" :comparator "i;ascii-numeric" "x-number" "41" { fileinto "r02"; }
if header :value "lt" :comparator "i;ascii-numeric" "x-number" "7" { fileinto "r03"; }
if header :value "le" :comparator "i;ascii-numeric" "x-number" "7" { fileinto "r04"; }
if header :value "ne" :comparator "i;ascii-numeric" "x-number" "42" { fileinto "r05"; }
if header :value "gt" :comparator "i;ascii-numeric" "subject" "99999" { fileinto "r06"; }
if header :value "lt" :comparator "i;ascii-numeric" "subject" "99999" { fileinto "r07"; }
if header :value "gt" "subject" "EARN" { fileinto "r08"; }
if header :value "gt" :comparator "i;octet" "subject" "EARN" { fileinto "r09"; }
if header :value "lt" :comparator "i;octet" "subject" "earn" { fileinto "r10"; }
if header :count "eq" :comparator "i;ascii-numeric" "x-number" "2" { fileinto "r11"; }
if header :count "eq" :comparator "i;ascii-numeric" "x-nothere" "0" { fileinto "r12"; }
if address :count "eq" :comparator "i;ascii-numeric" ["to", "cc"] "4" { fileinto "r13"; }
if header :count "ge" :comparator "i;ascii-numeric" ["to", "cc", "from"] "5" { fileinto "r14"; }
if header :count "lt" "x-number" "10" { fileinto "r15"; }
if header :count "ge" :comparator "i;ascii-numeric" ["to", "cc"] ["1", "9"] { fileinto "r16"; }
if header :value "eq" :comparator "i;ascii-numeric" "comment" "0" { fileinto "r17"; }
if header :value "eq" :comparator "i;ascii-numeric" "comment" "x" { fileinto "r18"; }
if header :value "ge" :comparator "i;ascii-numeric" "x-number" "0042" { fileinto "r19"; }
if header :is :comparator "i;ascii-numeric" "x-number" "42" { fileinto "r20"; }
