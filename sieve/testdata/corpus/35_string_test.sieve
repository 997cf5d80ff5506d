require ["variables", "relational", "comparator-i;ascii-numeric", "fileinto"];
set "a" "";
set "b" "x";
if string :count "eq" :comparator "i;ascii-numeric" ["${a}", "${b}"] "1" { fileinto "CountOne"; }
if string :is "${unset}" "" { fileinto "Unset"; }
