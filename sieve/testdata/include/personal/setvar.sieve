require ["include", "variables"];
global "verdict";
if header :contains "subject" "money" { set "verdict" "spam"; return; }
set "verdict" "ham";
