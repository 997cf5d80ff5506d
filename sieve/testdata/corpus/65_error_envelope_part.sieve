require "envelope";
if envelope "x-frob" "a" { keep; }
