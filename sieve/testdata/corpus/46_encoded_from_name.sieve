require "fileinto";
if header :contains "from" "René" { fileinto "NameDecoded"; }
if header :is "to" "carol@example.org" { fileinto "ToExact"; }
