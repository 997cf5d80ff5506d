require "fileinto";
if header :matches "subject" "*\\*broken\\**" { fileinto "Stars"; }
if header :matches "x-spam-level" "\\*\\*\\*\\**" { fileinto "FourStars"; }
if header :matches "subject" "*\\?" { fileinto "Question"; }
