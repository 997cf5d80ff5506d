require "relational";
if header :count "gte" "a" "1" { keep; }
