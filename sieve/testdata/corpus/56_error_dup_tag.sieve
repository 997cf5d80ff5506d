if header :contains :contains "a" "b" { keep; }
