require "fileinto";
fileinto "A";
fileinto "A";
keep;
fileinto "INBOX";
redirect "x@example.net";
redirect "x@example.net";
