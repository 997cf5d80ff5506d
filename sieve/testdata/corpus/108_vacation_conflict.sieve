require ["vacation", "reject"];
vacation "away";
if header :contains "subject" "money" { reject "no"; }
