require "comparator-i;ascii-numeric";
if header :matches :comparator "i;ascii-numeric" "a" "1*" { keep; }
