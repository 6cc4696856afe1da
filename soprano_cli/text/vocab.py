"""Word tables the normalizer reads: units, currencies, abbreviations, acronyms, Roman-numeral cues."""

from __future__ import annotations

# unit as written -> (singular, plural). Case matters: "MB" is a megabyte, "mb" is not listed.
UNITS: dict[str, tuple[str, str]] = {
    "mm": ("millimeter", "millimeters"),
    "cm": ("centimeter", "centimeters"),
    "m": ("meter", "meters"),
    "km": ("kilometer", "kilometers"),
    "nm": ("nanometer", "nanometers"),
    "μm": ("micrometer", "micrometers"),
    "ft": ("foot", "feet"),
    "yd": ("yard", "yards"),
    "yds": ("yard", "yards"),
    "mi": ("mile", "miles"),
    "mg": ("milligram", "milligrams"),
    "g": ("gram", "grams"),
    "kg": ("kilogram", "kilograms"),
    "lb": ("pound", "pounds"),
    "lbs": ("pound", "pounds"),
    "oz": ("ounce", "ounces"),
    "ml": ("milliliter", "milliliters"),
    "mL": ("milliliter", "milliliters"),
    "l": ("liter", "liters"),
    "L": ("liter", "liters"),
    "gal": ("gallon", "gallons"),
    "mph": ("mile per hour", "miles per hour"),
    "kph": ("kilometer per hour", "kilometers per hour"),
    "kmh": ("kilometer per hour", "kilometers per hour"),
    "ms": ("millisecond", "milliseconds"),
    "μs": ("microsecond", "microseconds"),
    "ns": ("nanosecond", "nanoseconds"),
    "s": ("second", "seconds"),
    "sec": ("second", "seconds"),
    "secs": ("second", "seconds"),
    "min": ("minute", "minutes"),
    "mins": ("minute", "minutes"),
    "h": ("hour", "hours"),
    "hr": ("hour", "hours"),
    "hrs": ("hour", "hours"),
    "Hz": ("hertz", "hertz"),
    "kHz": ("kilohertz", "kilohertz"),
    "MHz": ("megahertz", "megahertz"),
    "GHz": ("gigahertz", "gigahertz"),
    "B": ("byte", "bytes"),
    "KB": ("kilobyte", "kilobytes"),
    "kB": ("kilobyte", "kilobytes"),
    "MB": ("megabyte", "megabytes"),
    "GB": ("gigabyte", "gigabytes"),
    "TB": ("terabyte", "terabytes"),
    "PB": ("petabyte", "petabytes"),
    "kb": ("kilobit", "kilobits"),
    "Mb": ("megabit", "megabits"),
    "Gb": ("gigabit", "gigabits"),
    "kbps": ("kilobit per second", "kilobits per second"),
    "Mbps": ("megabit per second", "megabits per second"),
    "Gbps": ("gigabit per second", "gigabits per second"),
    "W": ("watt", "watts"),
    "kW": ("kilowatt", "kilowatts"),
    "MW": ("megawatt", "megawatts"),
    "kWh": ("kilowatt hour", "kilowatt hours"),
    "V": ("volt", "volts"),
    "mA": ("milliamp", "milliamps"),
    "mAh": ("milliamp hour", "milliamp hours"),
    "kcal": ("kilocalorie", "kilocalories"),
    "cal": ("calorie", "calories"),
    "dB": ("decibel", "decibels"),
    "px": ("pixel", "pixels"),
    "fps": ("frame per second", "frames per second"),
    "rpm": ("revolution per minute", "revolutions per minute"),
    "psi": ("pound per square inch", "pounds per square inch"),
    "°C": ("degree Celsius", "degrees Celsius"),
    "°F": ("degree Fahrenheit", "degrees Fahrenheit"),
    "°K": ("kelvin", "kelvins"),
    "°": ("degree", "degrees"),
    "%": ("percent", "percent"),
    "tsp": ("teaspoon", "teaspoons"),
    "tbsp": ("tablespoon", "tablespoons"),
    "Tbsp": ("tablespoon", "tablespoons"),
    "cc": ("cubic centimeter", "cubic centimeters"),
    "qt": ("quart", "quarts"),
    "fl oz": ("fluid ounce", "fluid ounces"),
    "sq ft": ("square foot", "square feet"),
    "sq mi": ("square mile", "square miles"),
    "yr": ("year", "years"),
    "yrs": ("year", "years"),
    "wk": ("week", "weeks"),
    "wks": ("week", "weeks"),
    "mos": ("month", "months"),
    "bps": ("basis point", "basis points"),
    "bp": ("basis point", "basis points"),
    "req": ("request", "requests"),
    "reqs": ("request", "requests"),
    "bbl": ("barrel", "barrels"),
    # Capitals and lower case that can only mean the unit ("12KG", "1 mbps").
    "KG": ("kilogram", "kilograms"),
    "KM": ("kilometer", "kilometers"),
    "CM": ("centimeter", "centimeters"),
    "MM": ("millimeter", "millimeters"),
    "LBS": ("pound", "pounds"),
    "MPH": ("mile per hour", "miles per hour"),
    "mbps": ("megabit per second", "megabits per second"),
    "gbps": ("gigabit per second", "gigabits per second"),
    "kbps": ("kilobit per second", "kilobits per second"),
    "ghz": ("gigahertz", "gigahertz"),
    "mhz": ("megahertz", "megahertz"),
    "khz": ("kilohertz", "kilohertz"),
    "kwh": ("kilowatt hour", "kilowatt hours"),
}
# Units of length: "km2", "m³" are square and cubic.
LENGTHS = {"mm", "cm", "m", "km", "ft", "yd", "mi", "nm", "μm", "KM", "CM", "MM"}
# The denominator of "km/h", "m/s": read in the singular after "per".
PER_UNITS = {"h": "hour", "hr": "hour", "s": "second", "sec": "second", "min": "minute",
             "m": "meter", "km": "kilometer", "kg": "kilogram", "g": "gram", "l": "liter",
             "L": "liter", "ml": "milliliter", "mL": "milliliter", "ft": "foot", "mi": "mile",
             "gal": "gallon", "lb": "pound", "day": "day", "week": "week", "month": "month",
             "year": "year", "yr": "year", "person": "person", "kWh": "kilowatt hour",
             "hour": "hour", "minute": "minute", "second": "second", "mo": "month", "wk": "week",
             "d": "day", "night": "night", "head": "head", "unit": "unit", "item": "item",
             "share": "share", "oz": "ounce", "gallon": "gallon", "liter": "liter", "pound": "pound",
             "sq ft": "square foot", "ea": "each", "bbl": "barrel", "bu": "bushel", "t": "ton",
             "ton": "ton", "req": "request", "MWh": "megawatt hour", "GB": "gigabyte", "TB": "terabyte",
             "pc": "piece", "pcs": "piece", "doz": "dozen", "dz": "dozen", "mth": "month"}

# symbol -> (singular, plural, minor unit singular, minor unit plural)
CURRENCIES: dict[str, tuple[str, str, str, str]] = {
    "$": ("dollar", "dollars", "cent", "cents"),
    "€": ("euro", "euros", "cent", "cents"),
    "£": ("pound", "pounds", "penny", "pence"),
    "¥": ("yen", "yen", "sen", "sen"),
    "₹": ("rupee", "rupees", "paisa", "paise"),
    "₩": ("won", "won", "jeon", "jeon"),
    "₽": ("ruble", "rubles", "kopek", "kopeks"),
    "₿": ("bitcoin", "bitcoins", "satoshi", "satoshis"),
}
MAGNITUDES = {
    "k": "thousand", "K": "thousand", "thousand": "thousand",
    "m": "million", "M": "million", "mn": "million", "MM": "million", "million": "million",
    "b": "billion", "B": "billion", "bn": "billion", "billion": "billion",
    "t": "trillion", "T": "trillion", "tn": "trillion", "trillion": "trillion",
}

# Titles that stand before a name: always expanded, never end a sentence.
TITLES = {
    "Mr": "Mister", "Mrs": "Missus", "Ms": "Miz", "Dr": "Doctor", "Prof": "Professor",
    "Rev": "Reverend", "Hon": "Honorable", "Gen": "General", "Col": "Colonel",
    "Capt": "Captain", "Lt": "Lieutenant", "Sgt": "Sergeant", "Gov": "Governor",
    "Sen": "Senator", "Rep": "Representative", "Pres": "President", "Fr": "Father",
    "St": "Saint", "Mt": "Mount", "Ft": "Fort", "Messrs": "Messieurs", "Mme": "Madame",
}
# The same spellings after a name or a street name.
AFTER_NAME = {"St": "Street", "Dr": "Drive", "Jr": "Junior", "Sr": "Senior"}
# Abbreviations read the same wherever they stand; the period is theirs, not the sentence's.
ABBREVIATIONS = {
    "etc": "et cetera", "vs": "versus", "approx": "approximately", "Ave": "Avenue",
    "Blvd": "Boulevard", "Rd": "Road", "Ln": "Lane", "Hwy": "Highway", "Inc": "Incorporated",
    "Ltd": "Limited", "Corp": "Corporation", "Co": "Company", "Dept": "Department",
    "Univ": "University", "Jr": "Junior", "Sr": "Senior", "cf": "compare", "est": "established", "Est": "established", "govt": "government",
    "Govt": "government", "Bros": "Brothers", "dept": "department", "misc": "miscellaneous",
}
# Dotted abbreviations, matched case-insensitively.
DOTTED = {
    "e.g.": "for example", "i.e.": "that is", "a.k.a.": "also known as", "et al.": "et al",
    "viz.": "namely", "n.b.": "note", "p.s.": "P S", "r.i.p.": "R I P",
}
# Before a number.
NUMBER_ABBREVIATIONS = {
    "No": "number", "Nos": "numbers", "p": "page", "pp": "pages",
    "Vol": "volume", "vol": "volume", "Ch": "chapter", "ch": "chapter", "Fig": "figure",
    "fig": "figure", "Sec": "section", "Art": "article", "Ex": "example", "Eq": "equation",
    "eq": "equation", "Ref": "reference", "ref": "reference", "Apt": "apartment",
    "apt": "apartment", "Rm": "room", "Ste": "suite",
}

MONTHS = {
    "january": 1, "february": 2, "march": 3, "april": 4, "may": 5, "june": 6, "july": 7,
    "august": 8, "september": 9, "october": 10, "november": 11, "december": 12,
    "jan": 1, "feb": 2, "mar": 3, "apr": 4, "jun": 6, "jul": 7, "aug": 8, "sep": 9,
    "sept": 9, "oct": 10, "nov": 11, "dec": 12,
}
MONTH_NAMES = "_ January February March April May June July August September October November December".split()

# Words that make a following Roman numeral a number ("World War II", "Chapter IV").
ROMAN_CUES = {
    "War", "Chapter", "Part", "Book", "Volume", "Vol", "Act", "Scene", "Section", "Phase",
    "Level", "Episode", "Season", "Article", "Title", "Class", "Type", "Stage", "Round",
    "Bowl", "Appendix", "Grade", "Category", "Tier", "Unit", "Year", "Vatican", "Schedule",
    "Division", "Book", "Canto", "Psalm", "Amendment", "Mark", "Apollo", "Rocky", "Henry",
}
# Names that carry regnal numbers: "Louis XIV" is "Louis the fourteenth".
REGNAL_NAMES = {
    "Henry", "Louis", "Charles", "George", "Edward", "William", "Elizabeth", "James", "John",
    "Richard", "Philip", "Frederick", "Peter", "Paul", "Pius", "Leo", "Benedict", "Gregory",
    "Innocent", "Clement", "Alexander", "Nicholas", "Catherine", "Mary", "Victor", "Ferdinand",
    "Napoleon", "Ramesses", "Ptolemy", "Constantine", "Otto", "Rudolf", "Felipe", "Juan",
    "Carlos", "Gustav", "Gustavus", "Christian", "Friedrich", "Wilhelm", "Ludwig", "Ivan",
    "Michael", "Harald", "Olaf", "Haakon", "Magnus", "Eric", "Erik", "Alfonso", "Pedro",
    "Manuel", "Robert", "David", "Anne", "Urban", "Boniface", "Sixtus", "Francis", "Stephen",
    "Amenhotep", "Thutmose", "Darius", "Antiochus", "Cleopatra", "Frederik", "Willem",
    "Umberto", "Rama", "Akihito", "Abdullah", "Hussein", "Mohammed", "Selim", "Mehmed",
    "Suleiman", "Murad", "Baldwin", "Conrad", "Lothair", "Pepin", "Valdemar", "Sigismund",
}

# Capitalised acronyms said as a word, so never spelled out.
SAID_AS_WORDS = {
    "NASA", "NATO", "UNESCO", "UNICEF", "LASER", "RADAR", "SCUBA", "AIDS", "OPEC", "FIFA",
    "NAFTA", "GIF", "JPEG", "PIN", "RAM", "ROM", "LAN", "SIM", "CAPTCHA", "COVID", "SARS",
    "MERS", "NASDAQ", "FEMA", "OSHA", "DARPA", "ISIS", "YOLO", "GUI", "WIFI", "IKEA", "LEGO",
    "ASCII", "BASIC", "COBOL", "FORTRAN", "PDF", "SWAT", "TED", "UEFA", "ANSI", "POTUS",
    "SCOTUS", "FLOTUS", "OK", "NAT", "CERN", "DOS", "SQL", "NOAA", "INTERPOL", "ZIP", "RAID",
    "WASP", "EPCOT", "ASAP", "GIGO", "SONAR", "TASER", "ESPN", "IMAX", "NIMBY", "AWOL", "MASH",
    "PAC", "SAT", "CAT", "DEF", "CON", "LOL", "MIT", "PIC", "POS", "CAD", "TAB", "ENTER",
}
# Short words a writer may put in capitals for emphasis; they are read as words.
CAPS_WORDS = set(
    """A AN AM AS AT BE BY DO GO HE IF IN IS IT ME MY NO OF ON OR SO TO UP US WE OH HI
    ALL AND ANY ARE BUT CAN DID FOR GET GOT HAD HAS HER HIM HIS HOW ITS LET MAY NEW NOT
    NOW OFF OLD ONE OUR OUT OWN SAY SEE SHE THE TOO TWO USE WAS WAY WHO WHY YES YET YOU
    BAD BIG BOY DAY END FEW FUN GOD GUY HOT JOB KEY LAW LOT MAN MEN NEW RED RUN SAD SET
    SIT TOP TRY WAR WIN WON BAN BOX BUY CAR CUT EAT EYE FAR FIX FLY HIT ICE ILL JOY LIE
    LOW MAD MIX NET PAY PUT RAW SEX SKY SUN TAX TEN WET WOW ZEN ALSO BACK BEEN BEST BOTH
    CALL CAME COME DONE DOWN EACH EVEN EVER FACT FEEL FIND FREE FROM FULL GAVE GIVE GOOD
    HAVE HELP HERE HIGH HOME HOPE INTO JUST KEEP KIND KNOW LAST LEFT LIFE LIKE LIVE LONG
    LOOK LOVE MADE MAKE MANY MORE MOST MUCH MUST NAME NEED NEXT NICE NONE ONCE ONLY OPEN
    OVER PART PLAY REAL SAID SAME SEEN SOME STOP SUCH SURE TAKE TELL THAN THAT THEM THEN
    THEY THIS TIME TRUE TURN VERY WANT WELL WENT WERE WHAT WHEN WILL WITH WORD WORK YEAR
    YOUR BEEN DEAD DONT EASY FAST FIRE GAME GIRL HARD HATE HEAD HEAR HOLD HUGE IDEA KILL
    LATE LESS LOSE LOST MIND MISS MOVE NEAR NEWS NOTE PLAN READ REST RICH RISK ROOM RULE
    SAFE SALE SAVE SEND SHOW SIDE SIGN SOON TALK TEAM TEST TOLD WAIT WALK WARM WEEK WIDE
    WISH ZERO HELL WARN NOTE COOL BOLD EXIT QUIT OKAY UGH AWAY ALONE""".split()
)
# Capitalised short forms always spelled out, even though they look like words.
SPELLED = {"US", "AI", "ID", "TV", "PC", "UK", "EU", "UN"}
# Mixed-case forms with a fixed reading.
SPECIAL_WORDS = {
    "PhD": "P H D", "PhDs": "P H Ds", "iOS": "i O S", "macOS": "mac O S", "MSc": "M S C",
    "BSc": "B S C", "DVDs": "D V Ds", "CDs": "C Ds", "WWII": "World War Two", "WWI": "World War One",
    "WW2": "World War Two", "WW1": "World War One", "401k": "four oh one K", "401(k)": "four oh one K",
    # Finance shorthand: "up 11% YoY".
    "YoY": "year over year", "QoQ": "quarter over quarter", "MoM": "month over month", "WoW": "week over week",
}
# Chat and note-taking shorthand, as a careful reader says it. Matched as whole words in lower
# case or with a capital first letter; the ambiguous ones (a name, an era) only in lower case.
CHAT = {
    "tmrw": "tomorrow", "tmr": "tomorrow", "tmw": "tomorrow", "thx": "thanks", "thnx": "thanks",
    "pls": "please", "plz": "please", "idk": "I don't know", "lmk": "let me know", "omw": "on my way",
    "btw": "by the way", "ngl": "not gonna lie", "imo": "in my opinion", "imho": "in my humble opinion",
    "tbh": "to be honest", "brb": "be right back", "nvm": "never mind", "ttyl": "talk to you later",
    "omg": "oh my god", "bday": "birthday", "fyi": "F Y I", "b/c": "because", "w/e": "whatever",
    "pdf": "P D F", "csv": "C S V", "asap": "A S A P", "dm": "D M", "irl": "in real life",
}
CHAT_LOWER_ONLY = {"u": "you", "r": "are", "ur": "your", "bc": "because", "np": "no problem", "ty": "thank you",
                   "rn": "right now", "tho": "though", "gf": "girlfriend", "bf": "boyfriend"}

# Top-level domains that make "word.tld" a domain name.
TLDS = {
    "com", "org", "net", "edu", "gov", "io", "ai", "co", "uk", "us", "de", "fr", "info", "biz",
    "dev", "app", "me", "tv", "ca", "au", "jp", "cn", "ru", "in", "eu", "ly", "gg", "xyz",
    "online", "tech", "site", "mil", "int", "nl", "se", "no", "es", "it", "ch", "be",
}

# Capitalised words that usually open a sentence: after "U.S." or "a.m." they mean the
# period also ended the sentence; after "Dr." or "St." they mean it was not a title.
STARTERS = set(
    """The A An He She It We They I You This That These Those There Then But And So In On
    At If When What Who Why How Where My His Her Our Their Its As After Before However
    Meanwhile Yes No Now Today Tomorrow Yesterday Later Also Some Many All One Most For
    With While Since Although Each Every Please Thanks Here Not Just Once Still Yet Soon
    Next Finally First Instead Our Your Let Did Do Does Is Are Was Were Will Would Can
    Could Should Both Other Another Such Even Only Never Always Sometimes Oh Well Nobody
    Everyone Everybody Someone Nothing Everything Because Unless Until During From Over
    Under Back Although Though""".split()
)

# Street types as written in addresses, any case -> said.
STREET_TYPES = {
    "st": "Street", "street": "Street", "ave": "Avenue", "avenue": "Avenue", "rd": "Road", "road": "Road",
    "blvd": "Boulevard", "boulevard": "Boulevard", "dr": "Drive", "drive": "Drive", "ln": "Lane", "lane": "Lane",
    "ct": "Court", "court": "Court", "pl": "Place", "place": "Place", "hwy": "Highway", "highway": "Highway",
    "expy": "Expressway", "expressway": "Expressway", "pkwy": "Parkway", "parkway": "Parkway", "way": "Way",
    "ter": "Terrace", "terrace": "Terrace", "cir": "Circle", "circle": "Circle", "sq": "Square", "square": "Square",
    "fwy": "Freeway", "trl": "Trail", "aly": "Alley", "plz": "Plaza",
}
COMPASS = {"N": "North", "S": "South", "E": "East", "W": "West", "NE": "Northeast", "NW": "Northwest",
           "SE": "Southeast", "SW": "Southwest"}
US_STATES = {
    "AL": "Alabama", "AK": "Alaska", "AZ": "Arizona", "AR": "Arkansas", "CA": "California", "CO": "Colorado",
    "CT": "Connecticut", "DE": "Delaware", "FL": "Florida", "GA": "Georgia", "HI": "Hawaii", "ID": "Idaho",
    "IL": "Illinois", "IN": "Indiana", "IA": "Iowa", "KS": "Kansas", "KY": "Kentucky", "LA": "Louisiana",
    "ME": "Maine", "MD": "Maryland", "MA": "Massachusetts", "MI": "Michigan", "MN": "Minnesota",
    "MS": "Mississippi", "MO": "Missouri", "MT": "Montana", "NE": "Nebraska", "NV": "Nevada",
    "NH": "New Hampshire", "NJ": "New Jersey", "NM": "New Mexico", "NY": "New York", "NC": "North Carolina",
    "ND": "North Dakota", "OH": "Ohio", "OK": "Oklahoma", "OR": "Oregon", "PA": "Pennsylvania",
    "RI": "Rhode Island", "SC": "South Carolina", "SD": "South Dakota", "TN": "Tennessee", "TX": "Texas",
    "UT": "Utah", "VT": "Vermont", "VA": "Virginia", "WA": "Washington", "WV": "West Virginia",
    "WI": "Wisconsin", "WY": "Wyoming", "DC": "D C",
}
