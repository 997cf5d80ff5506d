require ["vacation"];
vacation :days 2 :seconds 20 "x";
