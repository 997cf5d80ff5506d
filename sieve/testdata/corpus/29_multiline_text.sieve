require ["variables", "fileinto"];
set "body" text:
line one
..dotted
.
;
if string :contains "${body}" ".dotted" { fileinto "Dotted"; }
