require ["editheader", "fileinto", "variables"];
addheader "X-Sieve-Note" "seen by sieve";
if header :is "x-sieve-note" "seen by sieve" { fileinto "added"; }
deleteheader "subject";
if not exists "subject" { fileinto "subject-gone"; }
addheader :last "Subject" "replaced";
if header :is "subject" "replaced" { fileinto "subject-replaced"; }
deleteheader "received";
if exists "received" { fileinto "received-kept"; }
deleteheader "auto-submitted";
if exists "auto-submitted" { fileinto "autosub-kept"; }
