if header :contains "subject" "x" { keep; 
