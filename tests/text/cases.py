"""Written -> spoken cases for normalize, grouped by category (input, expected)."""

CARDINALS = [
    ("0", "zero"), ("7", "seven"), ("13", "thirteen"), ("20", "twenty"), ("42", "forty two"),
    ("99", "ninety nine"), ("100", "one hundred"), ("101", "one hundred one"), ("115", "one hundred fifteen"),
    ("999", "nine hundred ninety nine"), ("1,000", "one thousand"), ("1,001", "one thousand one"),
    ("12,345", "twelve thousand three hundred forty five"), ("1,000,000", "one million"),
    ("2,500,000", "two million five hundred thousand"), ("1,234,567", "one million two hundred thirty four thousand five hundred sixty seven"),
    ("10000", "ten thousand"), ("123456", "one hundred twenty three thousand four hundred fifty six"),
    ("1000000000", "one billion"), ("I have 3 cats.", "I have three cats."),
    ("There are 365 days.", "There are three hundred sixty five days."), ("Room 12 is open.", "Room twelve is open."),
    ("007", "zero zero seven"), ("It weighs 9000 tons.", "It weighs nine thousand tons."),
    ("He scored 21 points", "He scored twenty one points"), ("Over 50,000 people came.", "Over fifty thousand people came."),
]
NEGATIVES = [
    ("-5", "minus five"), ("-12", "minus twelve"), ("It was -3 outside.", "It was minus three outside."),
    ("-1,000", "minus one thousand"), ("from -10 to 10", "from minus ten to ten"), ("-0.5", "minus zero point five"),
    ("a drop of -2.5", "a drop of minus two point five"),
]
DECIMALS = [
    ("3.14", "three point one four"), ("0.5", "zero point five"), (".5", "point five"), ("2.0", "two point zero"),
    ("10.25", "ten point two five"), ("1,234.56", "one thousand two hundred thirty four point five six"),
    ("Pi is 3.14159.", "Pi is three point one four one five nine."), ("version 2.0.1", "version two point zero point one"),
    ("IP 192.168.0.1", "I P one nine two dot one six eight dot zero dot one"),
    ("a 4.5 rating", "a four point five rating"),
]
ORDINALS = [
    ("1st", "first"), ("2nd", "second"), ("3rd", "third"), ("4th", "fourth"), ("11th", "eleventh"),
    ("12th", "twelfth"), ("13th", "thirteenth"), ("21st", "twenty first"), ("22nd", "twenty second"),
    ("23rd", "twenty third"), ("30th", "thirtieth"), ("40th", "fortieth"), ("99th", "ninety ninth"),
    ("100th", "one hundredth"), ("101st", "one hundred first"), ("1000th", "one thousandth"),
    ("She came 2nd.", "She came second."), ("the 5th floor", "the fifth floor"), ("on his 18th birthday", "on his eighteenth birthday"),
]
FRACTIONS = [
    ("1/2", "one half"), ("3/4", "three quarters"), ("1/4", "one quarter"), ("2/3", "two thirds"), ("1/3", "one third"),
    ("5/8", "five eighths"), ("1/10", "one tenth"), ("7/16", "seven sixteenths"), ("1 1/2", "one and a half"),
    ("2 3/4", "two and three quarters"), ("Add 1/2 cup of sugar.", "Add one half cup of sugar."), ("½", "one half"),
    ("3½", "three and a half"), ("¾", "three quarters"), ("24/7", "twenty four seven"),
]
RANGES = [
    # Issue 18: ranges whose ends carry their own marks.
    ("$250-$300", "two hundred fifty dollars to three hundred dollars"), ("2%-10%", "two percent to ten percent"),
    ("1960s-80s", "nineteen sixties to eighties"), ("4:00 am - 8:12 pm", "four A M to eight twelve P M"),
    ("1-2=5", "one minus two equals five"),

    ("10-20", "ten to twenty"), ("1990–1995", "nineteen ninety to nineteen ninety five"), ("5-10", "five to ten"),
    ("pages 10-20", "pages ten to twenty"), ("1939-1945", "nineteen thirty nine to nineteen forty five"),
    ("2010-2020", "twenty ten to twenty twenty"), ("3–5 days", "three to five days"), ("from 1990-95", "from nineteen ninety to ninety five"),
    ("ages 18-25", "ages eighteen to twenty five"), ("1.5-2.5", "one point five to two point five"),
]
YEARS = [
    # Issue 18: a year needs no cue word; a count or a calculation stays a number.
    ("In 1994, the war ended.", "In nineteen ninety four, the war ended."), ("The 1994 season", "The nineteen ninety four season"),
    ("1500 people", "fifteen hundred people"), ("§ 1983", "section nineteen eighty three"),
    ("2^10 = 1024", "two to the power of ten equals one thousand twenty four"), ("3000 votes", "three thousand votes"),

    ("in 1999", "in nineteen ninety nine"), ("in 2005", "in two thousand five"), ("in 2024", "in twenty twenty four"),
    ("in 1900", "in nineteen hundred"), ("in 2000", "in two thousand"), ("since 1066", "since ten sixty six"),
    ("in 1905", "in nineteen oh five"), ("by 2030", "by twenty thirty"), ("the 1980s", "the nineteen eighties"),
    ("the '90s", "the nineties"), ("the 90s", "the nineties"), ("the 1800s", "the eighteen hundreds"),
    ("the 2010s", "the twenty tens"), ("the 2000s", "the two thousands"), ("in the 1960s", "in the nineteen sixties"),
    ("She was born in 1985.", "She was born in nineteen eighty five."), ("1999 was a good year.", "nineteen ninety nine was a good year."),
    ("in 44 BC", "in forty four B C"), ("in 1492 AD", "in fourteen ninety two A D"), ("the year 2012", "the year twenty twelve"),
    ("during 1918", "during nineteen eighteen"), ("the ’80s", "the eighties"), ("summer of 1969", "summer of nineteen sixty nine"),
]
DATES = [
    # Issue 18: months in any case, dashes and slashes, year first.
    ("july 25 2012", "July twenty fifth, twenty twelve"), ("JAN 15 2020", "January fifteenth, twenty twenty"),
    ("SEPT. 15", "September fifteenth"), ("2016/07/03", "July third, twenty sixteen"),
    ("15-01-2020", "the fifteenth of January, twenty twenty"), ("Jan-15-2020", "January fifteenth, twenty twenty"),
    ("25 sept.", "the twenty fifth of September"), ("17 may 2010", "the seventeenth of May, twenty ten"),
    ("You may 2 apples", "You may two apples"), ("2Q22 results", "the second quarter of twenty two results"),

    ("January 5, 2021", "January fifth, twenty twenty one"), ("5 Jan 2021", "the fifth of January, twenty twenty one"),
    ("01/05/2021", "January fifth, twenty twenty one"), ("2021-01-05", "January fifth, twenty twenty one"),
    ("March 3rd", "March third"), ("July 4, 1776", "July fourth, seventeen seventy six"), ("Dec. 25", "December twenty fifth"),
    ("25 December 2020", "the twenty fifth of December, twenty twenty"), ("31/12/1999", "the thirty first of December, nineteen ninety nine"),
    ("June 2020", "June twenty twenty"), ("on May 1", "on May first"), ("Feb 29, 2024", "February twenty ninth, twenty twenty four"),
    ("1999-12-31", "December thirty first, nineteen ninety nine"), ("12/25/2020", "December twenty fifth, twenty twenty"),
    ("the 4th of July", "the fourth of July"), ("September 11, 2001", "September eleventh, two thousand one"),
    ("10 Oct. 2010", "the tenth of October, twenty ten"),
]
TIMES = [
    # Issue 18: h:mm:ss is a duration; dotted times, a.m without its last period, zones, military hours.
    ("1:01:01", "one hour one minute and one second"), ("14:10:30", "fourteen hours ten minutes and thirty seconds"),
    ("1.59 p.m.", "one fifty nine P M."), ("0800 hours", "oh eight hundred hours"), ("01:00 a.m", "one A M"),
    ("1:59 p.m. EST", "one fifty nine P M E S T"), ("9am-5pm", "nine A M to five P M"),
    ("10:30-11:45am", "ten thirty to eleven forty five A M"),

    ("7:05", "seven oh five"), ("10:00 am", "ten A M"), ("3:30 p.m.", "three thirty P M."), ("14:45", "fourteen forty five"),
    ("9 pm", "nine P M"), ("at 6:00", "at six o'clock"), ("12:30 PM", "twelve thirty P M"), ("8:15 a.m. sharp", "eight fifteen A M sharp"),
    ("at 5 p.m. Then we ate.", "at five P M. Then we ate."), ("7am", "seven A M"), ("11:59 pm", "eleven fifty nine P M"),
    ("00:00", "zero hundred"), ("18:00", "eighteen hundred"), ("1:05:30", "one hour five minutes and thirty seconds"),
    ("at 10 AM", "at ten A M"), ("The meeting is at 4:20.", "The meeting is at four twenty."),
]
MONEY = [
    # Issue 18: per-unit rates, named dollars, one or three decimals, scales, "about".
    ("$20/hour", "twenty dollars per hour"), ("£10/wk", "ten pounds per week"), ("US$5", "five U S dollars"),
    ("$20.5", "twenty dollars and fifty cents"), ("$2.000", "two dollars"), ("1.5M users", "one point five million users"),
    ("~$3 million", "about three million dollars"), ("A$20", "twenty Australian dollars"),

    ("$5", "five dollars"), ("$1", "one dollar"), ("$5.50", "five dollars and fifty cents"), ("$0.99", "ninety nine cents"),
    ("$1.01", "one dollar and one cent"), ("$2.5 billion", "two point five billion dollars"), ("$10K", "ten thousand dollars"),
    ("€3M", "three million euros"), ("£20", "twenty pounds"), ("£1.50", "one pound and fifty pence"), ("¥1000", "one thousand yen"),
    ("$1,000,000", "one million dollars"), ("€5", "five euros"), ("€1", "one euro"), ("$3 million", "three million dollars"),
    ("$100", "one hundred dollars"), ("$5bn", "five billion dollars"), ("20€", "twenty euros"), ("50¢", "fifty cents"),
    ("-$5", "minus five dollars"), ("$10-20", "ten to twenty dollars"), ("It costs $19.99.", "It costs nineteen dollars and ninety nine cents."),
    ("$1.5M", "one point five million dollars"), ("£2 million", "two million pounds"), ("$0.01", "one cent"), ("$5.00", "five dollars"),
]
PERCENT = [
    ("50%", "fifty percent"), ("3.5%", "three point five percent"), ("100%", "one hundred percent"), ("-2%", "minus two percent"),
    ("10-20%", "ten to twenty percent"), ("a 5% raise", "a five percent raise"), ("0.1%", "zero point one percent"),
    ("1%", "one percent"), ("99.9 %", "ninety nine point nine percent"),
]
UNITS = [
    # Issue 18: "/" after a number, fractions before a unit, capitals, scales, square and cubic.
    ("12/kg", "twelve per kilogram"), ("4 1/2 lbs", "four and a half pounds"), ("1 1/2 tsp", "one and a half teaspoons"),
    ("1/2 lb", "half a pound"), ("12KG", "twelve kilograms"), ("1 mbps", "one megabit per second"),
    ("100 million kg", "one hundred million kilograms"), ("41 km²", "forty one square kilometers"),
    ("3 cc/s", "three cubic centimeters per second"),

    ("5 km", "five kilometers"), ("1 km", "one kilometer"), ("10kg", "ten kilograms"), ("1 kg", "one kilogram"),
    ("60 mph", "sixty miles per hour"), ("100 km/h", "one hundred kilometers per hour"), ("25°C", "twenty five degrees Celsius"),
    ("98.6°F", "ninety eight point six degrees Fahrenheit"), ("1 °C", "one degree Celsius"), ("6 ft", "six feet"), ("1 ft", "one foot"),
    ("10 lbs", "ten pounds"), ("1 lb", "one pound"), ("500 ml", "five hundred milliliters"), ("2 L", "two liters"),
    ("16 GB", "sixteen gigabytes"), ("1 TB", "one terabyte"), ("512 MB", "five hundred twelve megabytes"), ("3.5 GHz", "three point five gigahertz"),
    ("5 cm", "five centimeters"), ("2.5 kg", "two point five kilograms"), ("30 min", "thirty minutes"), ("1 hr", "one hour"),
    ("200 mg", "two hundred milligrams"), ("12 oz", "twelve ounces"), ("9.8 m/s", "nine point eight meters per second"),
    ("100 m", "one hundred meters"), ("40 W", "forty watts"), ("5'11\"", "five feet eleven inches"), ("90°", "ninety degrees"),
    ("3 mi", "three miles"), ("50 Mbps", "fifty megabits per second"), ("5-10 km", "five to ten kilometers"),
    ("750 mL", "seven hundred fifty milliliters"), ("300 ms", "three hundred milliseconds"), ("4000 mAh", "four thousand milliamp hours"),
    ("a 2 kWh battery", "a two kilowatt hour battery"), ("5 min.", "five minutes."),
]
PHONES = [
    # Issue 18: codes are read digit by digit, not as quantities.
    ("card ending in 8876", "card ending in eight eight seven six"), ("your PIN is 4321", "your PIN is four three two one"),
    ("zip code 94110", "zip code nine four one one zero"), ("ab9453", "ab nine four five three"),
    ("111-11-1111", "one one one, one one, one one one one"), ("Boeing 737", "Boeing seven thirty seven"),

    ("555-123-4567", "five five five, one two three, four five six seven"),
    ("(555) 123-4567", "five five five, one two three, four five six seven"),
    ("555.123.4567", "five five five, one two three, four five six seven"),
    ("1-800-555-0199", "one, eight zero zero, five five five, zero one nine nine"),
    ("+1 555 123 4567", "plus one, five five five, one two three, four five six seven"),
    ("+44 20 7946 0958", "plus four four, two zero, seven nine four six, zero nine five eight"),
    ("Call 555-1234.", "Call five five five, one two three four."),
]
MATH = [
    ("1+1=2", "one plus one equals two"), ("6 * 7", "six times seven"), ("6 × 7", "six times seven"), ("10 − 4", "ten minus four"),
    ("x > 5", "x is greater than five"), ("y < 3", "y is less than three"), ("x ≤ 10", "x is less than or equal to ten"),
    ("x ≥ 0", "x is greater than or equal to zero"), ("2^10", "two to the power of ten"), ("x^2", "x squared"),
    ("a = b", "a equals b"), ("3 ÷ 4", "three divided by four"), ("5 - 3 = 2", "five minus three equals two"),
    ("x ≠ y", "x does not equal y"), ("2 + 2", "two plus two"), ("1920x1080", "nineteen twenty by ten eighty"),
    ("10x faster", "ten times faster"), ("m²", "m squared"), ("±5", "plus or minus five"), ("π ≈ 3.14", "π is approximately three point one four"),
]
WEB = [
    # Issue 18: numbers in addresses are labels; file names; the path after an e-mail address.
    ("asdf123@abc.com", "asdf one two three at abc dot com"), ("See intro.html now.", "See intro dot html now."),
    ("sdf@gmail.com/123-sm", "sdf at gmail dot com slash one two three dash sm"),
    ("file:///photos/image.jpg", "file colon slash slash slash photos slash image dot jpg"),
    ("http://www.nvidia.com/rtx-6000", "H T T P colon slash slash W W W dot nvidia dot com slash rtx dash six thousand"),
    ("test$", "test dollar"), ("dfsd#sfgsfd$", "dfsd hash sfgsfd dollar"), ("31/31/100", "thirty one slash thirty one slash one hundred"),

    ("google.com", "google dot com"), ("Visit example.org today", "Visit example dot org today"),
    ("https://www.example.com", "H T T P S colon slash slash W W W dot example dot com"),
    ("http://example.com/about", "H T T P colon slash slash example dot com slash about"),
    ("john.doe@gmail.com", "john dot doe at gmail dot com"), ("Email me at jane@example.co.uk.", "Email me at jane at example dot co dot uk."),
    ("See https://docs.python.org/3/.", "See H T T P S colon slash slash docs dot python dot org slash three."), ("my-site.io", "my dash site dot io"),
    ("support@acme.com", "support at acme dot com"), ("www.bbc.co.uk", "W W W dot bbc dot co dot uk"),
]
ABBREVIATIONS = [
    ("I met Dr. Who. He was nice.", "I met Doctor Who. He was nice."), ("Dr. Who is back.", "Doctor Who is back."),

    # Issue 18: street addresses, states and ZIP codes.
    ("123 Main St., Apt 4B, Springfield, IL 62704", "one twenty three Main Street, Apt four B, Springfield, Illinois six two seven zero four"),
    ("Nancy lived at 1428 Elm St. It was a strange place.", "Nancy lived at fourteen twenty eight Elm Street. It was a strange place."),
    ("1211 E Arques Ave", "twelve eleven East Arques Avenue"), ("708 N 1st St, San City", "seven oh eight North first Street, San City"),
    ("2 San Tomas hwy, Santa, FL, 95051", "two San Tomas Highway, Santa, Florida, nine five zero five one"),
    ("Portland, OR is nice", "Portland, OR is nice"), ("PART XL", "PART forty"),

    ("Dr. Smith", "Doctor Smith"), ("Mr. Jones", "Mister Jones"), ("Mrs. Brown", "Missus Brown"), ("Ms. Lee", "Miz Lee"),
    ("St. Louis", "Saint Louis"), ("Baker St.", "Baker Street."), ("Elm Dr. is closed.", "Elm Drive is closed."),
    ("apples, pears, etc.", "apples, pears, et cetera."), ("cats vs. dogs", "cats versus dogs"), ("cats vs dogs", "cats versus dogs"),
    ("e.g. apples", "for example apples"), ("i.e. now", "that is now"), ("Prof. Xavier", "Professor Xavier"),
    ("Martin Luther King Jr.", "Martin Luther King Junior."), ("Mt. Everest", "Mount Everest"), ("No. 5", "number five"),
    ("Acme Inc.", "Acme Incorporated."), ("approx. 10", "approximately ten"), ("Mr Smith", "Mister Smith"),
    ("Main St. is busy", "Main Street is busy"), ("coffee w/ milk", "coffee with milk"), ("see p. 12", "see page twelve"),
    ("Gen. Patton", "General Patton"), ("a.k.a. Bob", "also known as Bob"), ("Capt. Hook", "Captain Hook"),
    ("Dr. Watson arrived.", "Doctor Watson arrived."), ("I live on Oak St. It is quiet.", "I live on Oak Street. It is quiet."),
]
ROMAN = [
    ("World War II", "World War two"), ("World War I", "World War one"), ("Chapter IV", "Chapter four"), ("Louis XIV", "Louis the fourteenth"),
    ("Henry VIII", "Henry the eighth"), ("Elizabeth II", "Elizabeth the second"), ("Part III", "Part three"), ("Super Bowl LVII", "Super Bowl fifty seven"),
    ("Pope John Paul II", "Pope John Paul the second"), ("Final Fantasy VII", "Final Fantasy seven"), ("Chapter XII begins", "Chapter twelve begins"),
    ("Act V", "Act five"), ("Charles I", "Charles the first"), ("So I think", "So I think"), ("Then I left", "Then I left"),
    ("Malcolm X", "Malcolm X"),
]
SYMBOLS = [
    # Issue 18.
    ("v2.3.1", "version two point three point one"), ("1/4th", "one quarter"), ("4rd", "four r d"), ("I/O", "I O"),
    ("~3 hours", "about three hours"), ("served in WWII.", "served in World War Two."), ("a 401(k) plan", "a four oh one K plan"),

    ("Tom & Jerry", "Tom and Jerry"), ("AT&T", "A T and T"), ("#1", "number one"), ("#hashtag", "hashtag hashtag"),
    ("meet @ noon", "meet at noon"), ("C++", "C plus plus"), ("5+ years", "five plus years"), ("and/or", "and or"),
    ("rock & roll", "rock and roll"), ("100% sure", "one hundred percent sure"), ("© 2024", "copyright twenty twenty four"),
    ("R&D", "R and D"), ("Q&A", "Q and A"), ("#5 on the list", "number five on the list"),
]
ACRONYMS = [
    ("FBI", "F B I"), ("the CIA", "the C I A"), ("NASA", "NASA"), ("NATO", "NATO"), ("U.S.", "U S."), ("the U.S. Army", "the U S Army"),
    ("USA", "U S A"), ("the UK", "the U K"), ("BBC news", "B B C news"), ("HTML and CSS", "H T M L and C S S"), ("an FAQ", "an F A Q"),
    ("CDs", "C Ds"), ("I love NYC", "I love N Y C"), ("the EU", "the E U"), ("OK", "OK"), ("the API", "the A P I"), ("SQL", "SQL"),
    ("MP3", "M P three"), ("PhD", "P H D"), ("the U.N.", "the U N."), ("J. K. Rowling", "J K Rowling"), ("GPU", "G P U"),
    ("DNA test", "D N A test"), ("COVID-19", "COVID-nineteen"), ("STOP", "STOP"), ("I SAID NO", "I SAID NO"),
]
PUNCTUATION = [
    ("“Hello,” she said.", '"Hello," she said.'), ("don’t", "don't"), ("It’s fine", "It's fine"), ("‘quoted’", '"quoted"'),
    ("Wait—what?", "Wait, what?"), ("yes – no", "yes, no"), ("Well…", "Well..."), ("Really?!", "Really?"), ("No!!!", "No!"),
    ("Hmm....", "Hmm..."), ("a  b   c", "a b c"), ("  padded  ", "padded"), ("Hi ,there", "Hi, there"), ("What??", "What?"),
    ("end,.", "end."), ("tab\there", "tab here"), ("line\nbreak", "line break"), ("«Bonjour»", '"Bonjour"'), ("café", "café"),
    ("rock’n’roll", "rock'n'roll"), ("the dogs’ bowls", "the dogs' bowls"), ("Stop.. now", "Stop. now"),
    # A slash between words is said "slash", but for pairs that mean "or" (issue 18).
    ("upgrade/update", "upgrade slash update"), ("upgrade / update", "upgrade slash update"), ("his/her", "his or her"),
    ("yes/no", "yes or no"), ("#mytext#", "hash mytext hash"), ("go <noise/> home", "go noise home"),
]
SENTENCES = [
    ("On May 5, 2023, the temperature hit 35°C in Rome.", "On May fifth, twenty twenty three, the temperature hit thirty five degrees Celsius in Rome."),
    ("Dr. Jones earned $85,000 in 2019.", "Doctor Jones earned eighty five thousand dollars in twenty nineteen."),
    ("The train leaves at 7:45 a.m. from platform 9.", "The train leaves at seven forty five A M from platform nine."),
    ("About 60% of the 1,200 voters agreed.", "About sixty percent of the one thousand two hundred voters agreed."),
    ("Call 555-867-5309 before 5 pm.", "Call five five five, eight six seven, five three zero nine before five P M."),
    ("The 3rd edition costs £12.99.", "The third edition costs twelve pounds and ninety nine pence."),
    ("He ran 26.2 mi in 3 hrs.", "He ran twenty six point two miles in three hours."),
    # Issue 18: zones glued to a dotted time, three-digit years with an era, improper mixed numbers.
    ("1:59 p.m.est", "one fifty nine P M E S T"), ("in 340 AD", "in three forty A D"), ("410 BC", "four ten B C"),
    ("2 142/1", "two and one hundred forty two over one"), ("1795 / 1805", "one thousand seven hundred ninety five over one thousand eight hundred five"),
    ("2x8 m2", "two by eight square meters"),
]

# Realistic lines (issue 18): each row is a rule a careful reader follows, found in news, finance, recipe, tech and chat text.
REALISTIC = [
    ("fixes CVE-2023-44487 today", "fixes C V E twenty twenty three four four four eight seven today"),
    ("ticket INC-2024-00123", "ticket I N C twenty twenty four zero zero one two three"),
    ("COVID-19 and the AK-47", "COVID-nineteen and the AK-forty seven"),
    ("rates rose 25 bps", "rates rose twenty five basis points"), ("up 11% YoY", "up eleven percent year over year"),
    ("grew 0.1% QoQ", "grew zero point one percent quarter over quarter"),
    ("$84.20/bbl", "eighty four dollars and twenty cents per barrel"), ("$10/seat", "ten dollars per seat"),
    ("100 req/s", "one hundred requests per second"), ("FY2024 EPS", "F Y twenty twenty four E P S"),
    ('a 10" skillet', "a ten inch skillet"), ('an 8x8" pan', "an eight by eight inch pan"),
    ('1/2" cubes', "one half inch cubes"), ('The screen is 14".', "The screen is fourteen inches."),
    ('He said "I have 5" and left.', "He said \"I have five\" and left."),
    ("port 8080", "port eighty eighty"), ("room 312", "room three twelve"), ("RTX 4090", "R T X forty ninety"),
    ("Error 404", "Error four oh four"), ("HTTP 429", "H T T P four twenty nine"),
    ("localhost:3000", "localhost colon three thousand"), ("Version 3.12", "Version three point twelve"),
    ("Python 3.11", "Python three point eleven"), ("v3.12", "version three point twelve"),
    ("costs 3.12 dollars", "costs three point one two dollars"), ("500K vehicles", "five hundred thousand vehicles"),
    ("10k requests", "ten thousand requests"), ("in 4K videos", "in four K videos"),
    ("Set the timeout to 30s.", "Set the timeout to thirty seconds."), ("in her 30s", "in her thirties"),
    ("the 60s and 70s", "the sixties and seventies"), ("1 tbsp. soy sauce", "one tablespoon soy sauce"),
    ("that was 10/10", "that was ten out of ten"), ("The UK's rate", "The U K's rate"),
    ("MAX_WORKERS", "max workers"), ("Node.js 20", "Node J S twenty"),
    ("npm install react@18.2.0", "npm install react at eighteen point two point zero"),
    ("a.bc@gmail.com", "a dot bc at gmail dot com"),
    ("Meeting moved to 3pm tmrw, ok?", "Meeting moved to three P M tomorrow, ok?"), ("Thx!", "Thanks!"),
    ("hey r u coming?", "hey are you coming?"), ("Ty Burrell", "Ty Burrell"), ("idk, lmk", "I don't know, let me know"),
    ("late bc of traffic", "late because of traffic"), ("go w/ the blue one", "go with the blue one"),
    ("np, happy to help :)", "no problem, happy to help"), ("can u send the pdf pls", "can you send the P D F please"),
    ("in the $1.2 billion lawsuit", "in the one point two billion dollar lawsuit"), ("the 8GB model", "the eight gigabyte model"),
    ("a 5,000 mAh battery", "a five thousand milliamp hour battery"), ("the 10 km of road", "the ten kilometers of road"),
    ("the 1980 s", "the nineteen eighties"), ("Kubernetes 1.29", "Kubernetes one point twenty nine"),
    ("approx. 120 calories", "approximately one hundred twenty calories"), ("apples vs. oranges", "apples versus oranges"),
]

ALL = {
    "cardinals": CARDINALS, "negatives": NEGATIVES, "decimals": DECIMALS, "ordinals": ORDINALS, "fractions": FRACTIONS,
    "ranges": RANGES, "years": YEARS, "dates": DATES, "times": TIMES, "money": MONEY, "percent": PERCENT, "units": UNITS,
    "phones": PHONES, "math": MATH, "web": WEB, "abbreviations": ABBREVIATIONS, "roman": ROMAN, "symbols": SYMBOLS,
    "acronyms": ACRONYMS, "punctuation": PUNCTUATION, "sentences": SENTENCES,
    "realistic": REALISTIC,
}
