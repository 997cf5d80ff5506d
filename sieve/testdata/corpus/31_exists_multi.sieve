require "fileinto";
if exists ["from", "date"] { fileinto "Both"; }
if exists ["from", "x-nothere"] { fileinto "Never"; }
if header :contains "x-tag" "BETA" { fileinto "Beta"; }
