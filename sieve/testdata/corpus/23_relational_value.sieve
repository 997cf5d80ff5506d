require ["relational", "comparator-i;ascii-numeric", "fileinto"];
if header :value "ge" :comparator "i;ascii-numeric" "x-spam-score" "10" { fileinto "Spam"; }
elsif header :value "gt" :comparator "i;ascii-numeric" "x-spam-score" "2" { fileinto "Maybe"; }
if header :value "lt" :comparator "i;ascii-numeric" "x-count" "10" { fileinto "SmallCount"; }
