require ["fileinto", "imap4flags"];
if address :domain "from" "example.com" { fileinto "from-example-com"; }
addflag "\\Seen";
