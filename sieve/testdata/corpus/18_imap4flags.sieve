require ["imap4flags", "fileinto"];
addflag "\\Seen";
if header :contains "subject" "meeting" { addflag ["\\Flagged", "$Work"]; }
removeflag "\\Seen";
fileinto "Folder";
