require ["fileinto", "copy"];
fileinto :copy "Archive";
if exists "list-id" { discard; }
