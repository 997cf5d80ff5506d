require ["virustest", "relational", "comparator-i;ascii-numeric", "fileinto", "variables"];
if virustest :value "eq" :comparator "i;ascii-numeric" "0" { fileinto "virus-untested"; }
if virustest :value "eq" :comparator "i;ascii-numeric" "5" { fileinto "virus-infected"; }
if virustest :matches "*" { fileinto "virus-${1}"; }
