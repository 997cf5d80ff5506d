if header :index 1 "x-tag" "a" { discard; }
