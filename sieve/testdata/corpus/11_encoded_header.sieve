require "fileinto";
if header :contains "subject" "Réunion d'été" { fileinto "Reunion"; }
if header :is "subject" "Réunion d'été — programme à venir" { fileinto "Exact"; }
if header :contains "subject" "€1000" { fileinto "Euro"; }
if address :is "from" "rene@news.example.net" { fileinto "Rene"; }
