require ["fileinto", "envelope"];
if header :is "comment" "" { fileinto "c01"; }
if header :contains "comment" "" { fileinto "c02"; }
if header :contains "x-nothere" "" { fileinto "c03"; }
if header :is "subject" "EARN MONEY QUICKLY!!!" { fileinto "c04"; }
if header :is :comparator "i;octet" "subject" "EARN MONEY QUICKLY!!!" { fileinto "c05"; }
if header :contains "to" "SUB.example" { fileinto "c06"; }
if header :contains "cc" "Ops Team" { fileinto "c07"; }
if address :contains "cc" "Ops Team" { fileinto "c08"; }
if address :is :localpart "cc" "OPS" { fileinto "c09"; }
if address :is :all "from" "JANE+SIEVE@MAIL.EXAMPLE.COM" { fileinto "c10"; }
if envelope :is "to" "kim+work@example.org" { fileinto "c11"; }
if envelope :is :comparator "i;octet" :domain "to" "Example.org" { fileinto "c12"; }
if envelope :contains "from" "+" { fileinto "c13"; }
if header :is "x-slash" "ends with a slash\\" { fileinto "c14"; }
if header :contains ["subject", "list-id"] ["frop-users", "zzz"] { fileinto "c15"; }
if exists "comment" { fileinto "c16"; }
if exists ["comment", "Message-ID", "x-nothere"] { fileinto "c17"; }
if header :is "message-id" "<abc123@example.com>" { fileinto "c18"; }
