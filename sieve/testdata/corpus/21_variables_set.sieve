require ["variables", "fileinto"];
set "folder" "Inbox.Sub";
set :upper "shout" "hello";
set :lowerfirst "lf" "HELLO";
set :length "len" "héllo";
fileinto "${folder}-${shout}-${lf}-${len}";
