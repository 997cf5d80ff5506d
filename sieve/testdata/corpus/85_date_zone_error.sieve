require "date";
if date :zone "+25" "date" "year" "2026" { discard; }
