require ["imap4flags", "fileinto", "variables"];
setflag "\\seen \\SEEN $Label1";
addflag ["\\Answered", "$label1 Extra"];
if hasflag "$LABEL1" { fileinto "f01"; }
if hasflag :contains "extra" { fileinto "f02"; }
if hasflag :matches "\\*" { fileinto :flags "" "f03"; }
removeflag "\\Answered";
set "v" "x y";
addflag "v" "z y";
if hasflag :is "v" "z" { fileinto :flags "${v}" "f04"; }
fileinto "f05";
removeflag ["\\Seen", "$Label1", "Extra"];
fileinto "f06";
