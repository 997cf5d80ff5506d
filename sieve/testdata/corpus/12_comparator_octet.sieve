require "fileinto";
if header :is :comparator "i;octet" "subject" "meeting tomorrow at 10" { fileinto "Lower"; }
if header :is :comparator "i;octet" "subject" "Meeting tomorrow at 10" { fileinto "Exact"; }
if header :contains :comparator "i;ascii-casemap" "subject" "TOMORROW" { fileinto "Casemap"; }
