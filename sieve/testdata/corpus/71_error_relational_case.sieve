require "relational";
if header :value "GE" "x-number" "1" { keep; }
