require ["imap4flags", "variables", "fileinto"];
setflag "myflags" "one";
addflag "myflags" "two";
if hasflag :is "myflags" "two" { fileinto :flags "${myflags}" "Vars"; }
