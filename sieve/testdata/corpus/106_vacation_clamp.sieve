require ["vacation", "variables"];
if header :matches "subject" "*" { vacation :days 0 :subject "Re: ${1}" "Away (${1})."; }
