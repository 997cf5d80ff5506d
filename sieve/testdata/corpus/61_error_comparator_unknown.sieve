if header :comparator "i;unicode-casemap2" "a" "b" { keep; }
