require ["fileinto", "imap4flags"];
if header :is "x-spam-flag" "yes" { fileinto :flags "$Junk \\Seen" "Junk"; stop; }
if header :contains "subject" ["build", "meeting"] { addflag "$Important"; }
