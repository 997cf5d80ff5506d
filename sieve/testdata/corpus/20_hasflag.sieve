require ["imap4flags", "fileinto"];
setflag "a b";
addflag "c";
if hasflag :is "b" { fileinto "HasB"; }
if hasflag :contains "x" { fileinto "Never"; }
removeflag ["a", "c"];
