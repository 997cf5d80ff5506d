if header :contains "subject" "meeting" { redirect "assistant@example.net"; }
