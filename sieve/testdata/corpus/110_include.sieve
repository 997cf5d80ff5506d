require ["include", "fileinto"];
include "common";
include :global "spam";
if header :contains "subject" "money" { fileinto "main-money"; }
