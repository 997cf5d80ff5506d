require "date";
if date "date" "century" "20" { discard; }
