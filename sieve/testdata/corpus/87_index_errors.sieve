require ["index"];
if header :last "x-tag" "a" { discard; }
