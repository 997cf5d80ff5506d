require ["include", "fileinto"];
if exists "list-id" { fileinto "list"; return; }
fileinto "no-list";
