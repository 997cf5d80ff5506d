REQUIRE "FileInto";
IF Header :Contains "SUBJECT" "meeting" { FileInto "Case"; }
