require "fileinto";
if header :matches "subject" "*build ?broken? on*" { fileinto "Broken"; }
if header :matches "subject" "Meeting*10" { fileinto "Ten"; }
if header :matches "subject" "meeting" { fileinto "Never"; }
