require "fileinto" ; # require
if header :is "subject" "earn money quickly\!\!\!" { fileinto "l01"; }
if header :contains "subject" "\m\o\n\e\y" { fileinto "l02"; }
if header :contains "subject" text: # comment after text:
money
.
{ fileinto "l03"; }
if header :contains "x-marks" "
" { fileinto "never"; }
if size :over 0K{fileinto"l04";}if size:under 1G{fileinto "l05";}
if true/**/{fileinto "l06" ;}
