require ["editheader"];
addheader "bad:name" "x";
