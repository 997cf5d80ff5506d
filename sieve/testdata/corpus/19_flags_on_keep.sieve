require "imap4flags";
setflag "\\Answered";
keep :flags ["\\Flagged", "urgent"];
