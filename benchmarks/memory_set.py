"""The labelled evaluation set for memory: a synthetic two-person WhatsApp chat over a year, the
questions a user would ask about the two people, and the ground-truth facts.

Sam Rivera (Leeds, then Manchester) and Jordan Okafor (Bristol) are old university friends who
text most weeks: mostly small talk (plans, shows, jokes, "lol", "ok see u"), with facts about
both of them dropped in along the way, in texting language that often shares no word with the
question ("where does Sam work now?" <- "first week at the new place done. the bakery on elm st
is chaos"). Some facts change over time (Sam moves city, changes job, car and partner; Jordan
changes job, neighbourhood and partner, gets a dog, passes his driving test): the question about
the current value is answered by the latest message(s), and some questions ask for the earlier one.

    build_set(seed=0) -> MemorySet       # .lines, .records, .questions, .facts, .write(folder)
    build_chat(n_messages, seed=0) -> str   # a long chat of the same kind, for latency tests

Run as a script: `python benchmarks/memory_set.py OUT_DIR [--seed N]` writes `chat.txt` (a
WhatsApp Android export: `15/03/2023, 21:04 - Sam Rivera: text`, one message a line, the
encryption notice first), `questions.jsonl` and `facts.jsonl`; with `--messages N` it writes only
a `chat.txt` of N messages made by `build_chat`.

Each question: id, question, answer, person, key, evidence (1-based line numbers in chat.txt of
the 1-3 messages holding the answer), changed (about a fact that changed over time), when ("now":
the current value of a changed fact, "before": an earlier one, null otherwise), hints (a word
every evidence line contains), facts (the ids of the facts it asks about) and shares_word
(whether an evidence line shares a content word with the question: false marks the questions
keyword search alone should miss). Each fact: id, person, key, value, evidence, valid_from,
valid_until, superseded, replaces. Same seed, same bytes: the seed picks the small talk, the
filler days and the times; the facts, their wording and their days are fixed.
"""

from __future__ import annotations

import json
import random
import re
import sys
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path

SAM, JORDAN = "Sam Rivera", "Jordan Okafor"
WHO = {"S": SAM, "J": JORDAN}
NOTICE = (
    "Messages and calls are end-to-end encrypted. No one outside of this chat, not even "
    "WhatsApp, can read or listen to them. Tap to learn more."
)
FIRST_DAY, LAST_DAY = date(2023, 2, 3), date(2024, 1, 27)
FILLER_SESSIONS = 36

# -- the facts ---------------------------------------------------------------------------------
# id: (person, key, value, hints, replaces). Every message tagged with the id (see EPISODES) is
# evidence for it and contains one of its hints (case-insensitive).
FACTS: dict[str, tuple[str, str, str, tuple[str, ...], str | None]] = {
    "s_job1": ("S", "job", "barista at Grindhouse, a coffee shop", ("grindhouse",), None),
    "s_job2": ("S", "job", "Crumb & Co, a bakery on Elm Street", ("bakery", "crumb"), "s_job1"),
    "s_shift": ("S", "shift start", "5am (ovens on by 5, alarm at 4:15)", ("4:15",), None),
    "s_city1": ("S", "city", "Leeds", ("leeds",), None),
    "s_city2": ("S", "city", "Manchester", ("manchester",), "s_city1"),
    "s_area1": ("S", "neighbourhood", "Headingley, Leeds", ("headingley",), None),
    "s_area2": ("S", "neighbourhood", "Ancoats, Manchester", ("ancoats",), "s_area1"),
    "s_moved": ("S", "moved", "to Manchester on 15 July 2023", ("ancoats", "15th july"), None),
    "s_flatmate": ("S", "flatmate", "Hugo", ("hugo", "flatmate"), None),
    "s_partner1": ("S", "partner", "Alex", ("alex",), None),
    "s_partner1_len": ("S", "relationship with Alex", "two years", ("2 years",), None),
    "s_partner2": ("S", "partner", "Dani", ("dani",), "s_partner1"),
    "s_partner2_job": ("S", "partner's job", "Dani is a firefighter", ("firefighter",), None),
    "s_sister": ("S", "sister", "Maya", ("maya",), None),
    "s_sister_job": ("S", "sister's job", "midwife", ("midwi",), None),
    "s_niece": ("S", "niece", "Ivy Rose, born 19 November 2023", ("ivy",), None),
    "s_brother": ("S", "brother", "Leo", ("leo",), None),
    "s_brother_study": ("S", "brother studies", "marine biology, Plymouth", ("plymouth",), None),
    "s_cat": ("S", "pet", "Biscuit, a ginger cat", ("biscuit",), None),
    "s_birthday": ("S", "birthday", "14 August (30 in 2023)", ("thirty", "birthday"), None),
    "s_allergy": ("S", "allergy", "peanuts", ("peanut", "epipen"), None),
    "s_car1": ("S", "car", "an old Ford Fiesta", ("fiesta",), None),
    "s_car2": ("S", "car", "a blue 2017 Toyota Yaris", ("yaris",), "s_car1"),
    "s_sport": ("S", "hobby", "bouldering (climbing)", ("boulder", "climb"), None),
    "s_food": ("S", "favourite food", "pho", ("pho",), None),
    "s_diet1": ("S", "diet", "eats meat", ("chicken",), None),
    "s_veg": ("S", "diet", "vegetarian since early September 2023", ("veggie",), "s_diet1"),
    "s_study": ("S", "studies", "psychology with the Open University", ("psychology",), None),
    "s_trip": ("S", "trip", "Lisbon in May 2023", ("lisbon",), None),
    "s_concert": ("S", "event", "saw Wet Leg live in March 2023", ("wet leg",), None),
    "s_parents": ("S", "parents", "live in Sheffield", ("sheffield",), None),
    "s_tattoo": ("S", "tattoo", "a small fern on her left forearm", ("fern", "forearm"), None),
    "s_plant": ("S", "plant", "a cactus called Gerald", ("gerald", "cactus"), None),
    "s_run": ("S", "event", "Great North Run in 2:04 (September 2023)", ("great north",), None),
    "s_drink": ("S", "favourite drink", "negroni", ("negroni",), None),
    "s_met": ("S", "met Jordan", "in first-year halls (Lupton) at university", ("halls",), None),
    "s_festival": ("S", "event", "Leeds Festival 2014 with Jordan", ("festival",), None),
    "j_job1": ("J", "job", "junior accountant at Hartley & Co", ("hartley",), None),
    "j_job2": ("J", "job", "data analyst at Northwind Energy", ("northwind",), "j_job1"),
    "j_job2_perks": ("J", "new job", "two monitors, free fruit", ("monitors",), None),
    "j_boss": ("J", "boss", "Graham (at Hartley & Co)", ("graham", "boss"), None),
    "j_exams": ("J", "exams", "ACCA", ("acca",), None),
    "j_city": ("J", "city", "Bristol", ("bristol",), None),
    "j_area1": ("J", "neighbourhood", "Easton, Bristol", ("easton",), None),
    "j_area2": ("J", "neighbourhood", "Bedminster, Bristol", ("bedminster",), "j_area1"),
    "j_partner1": ("J", "partner", "Priya", ("priya",), None),
    "j_breakup": ("J", "breakup", "Priya took a job in Edinburgh", ("edinburgh",), None),
    "j_valentine": ("J", "event", "pottery class with Priya (made an ashtray)", ("pottery",), None),
    "j_partner2": ("J", "partner", "Marcus", ("marcus",), "j_partner1"),
    "j_cat": ("J", "pet", "Miso, a cat", ("miso",), None),
    "j_dog": ("J", "pet", "Pickle, a rescue whippet", ("pickle",), None),
    "j_dog_breed": ("J", "dog breed", "whippet", ("whippet",), None),
    "j_brother": ("J", "brother", "Tayo", ("tayo",), None),
    "j_brother_study": ("J", "brother studies", "computer science at Leeds", ("leeds",), None),
    "j_birthday": ("J", "birthday", "3 March (29 in 2023)", ("birthday",), None),
    "j_lactose": ("J", "intolerance", "dairy (lactose)", ("dairy",), None),
    "j_football": (
        "J",
        "hobby",
        "five-a-side football on Thursdays",
        ("five a side", "thursday"),
        None,
    ),
    "j_injury": ("J", "injury", "broke his wrist at five-a-side (April 2023)", ("wrist",), None),
    "j_team": ("J", "football team", "Arsenal", ("arsenal",), None),
    "j_trip": ("J", "trip", "Japan (Tokyo and Osaka) in October 2023", ("osaka",), None),
    "j_language": ("J", "learning", "Japanese", ("japanese",), None),
    "j_food": ("J", "favourite food", "his mum's jollof rice", ("jollof",), None),
    "j_parents": ("J", "parents", "live in Croydon", ("croydon",), None),
    "j_band": ("J", "band", "The Soft Exits", ("soft exits",), None),
    "j_instrument": ("J", "instrument", "bass", ("bass",), None),
    "j_licence1": ("J", "driving licence", "none (failed tests)", ("licence",), None),
    "j_licence2": ("J", "driving licence", "passed (3rd try, Aug 2023)", ("passed",), "j_licence1"),
    "j_car": ("J", "car", "his mum's old Vauxhall Corsa", ("corsa",), None),
    "j_commute": ("J", "commute", "cycles to work", ("cycl",), None),
    "j_christmas": ("J", "plan", "Christmas 2023 in Lagos with his grandma", ("lagos",), None),
}

# -- the episodes ------------------------------------------------------------------------------
# (day, lines): the day (optionally with the time the session starts) and the lines, "S: text"
# or "J: text", tagged "[id,id] S: text" when the message is evidence for facts or questions
# (a backslash at the end of a line continues the message on the next).
# A day's episodes go into that day's session in this order, with small talk around them.
EPISODES: list[tuple[str, str]] = [
    ("2023-02-03 19:40", """
J: ok new phone new number, who dis
S: finally!! i've been texting your old one for a week like a lunatic
J: it went in the bath. long story
S: i need the long story
J: later 😂
"""),
    ("2023-02-05", """
S: what u up to
[j_city] J: walked the whole harbour today. \
bristol is the best city in the country when it's not raining
S: pics or it didn't happen
J: <Media omitted>
S: ok fine that's gorgeous
"""),
    ("2023-02-06 18:10", """
J: how was ur shift
[s_job1] S: work was grim. coach party walked into grindhouse at 8am, steamed milk for 3 hours
J: the glamour of the coffee trade
S: my wrists are crying
"""),
    ("2023-02-09 20:30", """
S: alive?
[j_job1] J: barely. month end at hartley & co, work is all spreadsheets and no daylight
S: accountant life
J: don't. i dream in pivot tables now
"""),
    ("2023-02-11 23:05", """
[s_flatmate] S: hugo has taken up the trumpet. at 11pm. on a saturday
J: who's hugo again
[s_flatmate] S: my flatmate!! tall, moustache, owns a lot of fleeces
J: oh god yes the fleece man
[s_area1] S: the whole neighbourhood can hear him, \
headingley is all students and they're banging on the wall
J: honestly that's culture, they need it
"""),
    ("2023-02-14 19:15", """
S: happy valentine's to u and only u
J: 😂 what are u up to tonight
[s_partner1] S: alex is cooking me a valentine's dinner. the smoke alarm has gone off once already
[j_partner1,j_valentine] J: priya booked us a pottery class for valentine's, \
i made an ashtray by accident
S: an ashtray 😭
J: it was meant to be a bowl
"""),
    ("2023-02-16", """
[s_city1] S: 9 days of rain in leeds. living here is like living in a sponge
J: send some this way, we've had none
S: take it. take all of it
"""),
    ("2023-02-18", """
S: <Media omitted>
J: what am i looking at
[s_cat] S: biscuit knocked a full coffee onto my laptop. this cat is a ginger menace
J: is the laptop ok
S: the laptop is sticky. he is unbothered
"""),
    ("2023-02-20", """
[j_cat] J: this cat. miso has figured out how to open the treat cupboard. we're doomed
S: cats are too smart
J: she sat there and looked me in the eye while doing it
"""),
    ("2023-02-22 21:50", """
[s_study] S: my OU psychology essay is due sunday and so far i have written the title
J: what's it on
S: attachment theory. which is ironic because i'm very attached to not doing it
J: 😂 u got this
"""),
    ("2023-02-23 22:10", """
[j_football] J: five a side tonight, lost 9-2
[j_football] J: i was in goal. it's my fault. thursdays are a curse
S: who put u in goal
J: nobody else would do it
"""),
    ("2023-02-26 14:20", """
[s_diet1] S: made a roast chicken for me and hugo, i'm basically a chef now
J: did it have gravy
S: from granules. i said basically
"""),
    ("2023-02-27", """
[s_car1] S: the fiesta failed its MOT again. this car is cursed
J: how old is that thing now
S: 14. it's held together by hope and gaffer tape
"""),
    ("2023-03-02 09:05", """
[j_area1] J: someone's blasting drum and bass on the corner of my road in easton. it's 9am
S: is that not just a normal tuesday there
J: thursday. but yes. i've started to like it
"""),
    ("2023-03-03 08:30", """
[j_birthday] S: HAPPY BIRTHDAY 🎂🎉 29 looks good on u
J: thank uuu
J: mum already sent a cake in the post, it arrived as crumbs
S: crumbs still count
"""),
    ("2023-03-04 19:00", """
S: my forearms are gone
J: what did u do
[s_sport] S: went bouldering with the work lot. two hours on the wall, i can't hold a mug
J: climbers are a cult
S: a cult with great forearms
"""),
    ("2023-03-08", """
[s_sister_job] S: my sister delivered twins at 3am last night. midwives are superheroes
[s_sister] J: maya is a legend, tell her i said so
S: she's asleep for the next 3 days
"""),
    ("2023-03-10", """
[j_brother,j_brother_study] J: my brother tayo got his offer from leeds!!! computer science
[j_brother] S: little tayo at uni?? i feel old
J: he's 18 sam. he's 6ft 2
S: still little to me
"""),
    ("2023-03-12", """
[s_tattoo] S: got the fern tattoo done!!
S: <Media omitted>
J: oh that's lovely. did it hurt
[s_tattoo] S: left forearm, 40 mins, barely felt it
"""),
    ("2023-03-16 11:20", """
[j_boss] J: graham just replied-all to the entire firm to correct MY formatting
S: who is graham
[j_boss] J: my boss. the man has never smiled
S: sack him
J: i wish that's how it worked
"""),
    ("2023-03-18", """
[j_band] J: my band is playing the old england next month if u fancy a trip. \
the soft exits, live and loud
S: wait ur band is still going?
[j_instrument] J: course. still playing bass, still bad at it
S: i'll come to one this year i promise
"""),
    ("2023-03-25", """
[s_brother,s_brother_study,q_siblings] S: my little brother leo \
got into plymouth for marine biology!!!
[s_brother] J: your leo?? baby leo??
S: baby is going to be hugging sharks
"""),
    ("2023-03-28 08:50", """
[j_commute] J: cycled in through a biblical downpour, arrived at my desk looking like a drowned rat
S: still no car?
[j_licence1] J: no licence still. test number 2 is in april
"""),
    ("2023-03-30 23:30", """
[s_concert] S: wet leg were INCREDIBLE live
S: ears still ringing
J: jealous. was it the academy?
S: yes, front row-ish
"""),
    ("2023-04-02", """
[s_sister,q_siblings] S: my sister maya just rang. she's pregnant!!! i'm going to be an auntie
J: AHHH congrats auntie sam
S: i'm going to be the fun one
"""),
    ("2023-04-08", """
[s_parents] S: easter at my parents' in sheffield, mum has made enough food for forty
J: save me some
S: i'm bringing u a tupperware of roast potatoes
"""),
    ("2023-04-09 17:45", """
[j_team] J: arsenal are bottling it AGAIN
S: i don't know what that means but i'm sorry
J: it means i'm going to be unbearable until may
"""),
    ("2023-04-15", """
J: thai place when i come up next month?
[s_allergy] S: my nut allergy would have me in a&e, everything in there has peanut in it
J: oh god yes sorry, forgot
[s_allergy] S: epipen lives in my bag don't worry
"""),
    ("2023-04-20", """
[j_exams] J: failed the ACCA audit paper by 3 marks. three
S: nooo. u can resit right?
J: september. pray for me
"""),
    ("2023-04-28 21:30", """
[j_injury] J: broke my wrist at five a side
J: cast for 6 weeks. typing with one hand
S: JORDAN
S: were u in goal again
J: worse. i tried a rabona
"""),
    ("2023-05-03", """
J: death row meal. go
[s_food] S: pho. it's always pho. a massive bowl with extra lime
[j_food] J: boring. mine's my mum's jollof, obviously
"""),
    ("2023-05-06", """
S: we're doing a cheese and wine night for my mate's birthday, wish u could come
[j_lactose] J: a cheese night would end me. dairy and i are not on speaking terms
S: there's crackers
"""),
    ("2023-05-12 22:15", """
[s_partner1] S: so. me and alex are done
J: oh no. u ok?
[s_partner1_len] S: yeah. it was mutual-ish. 2 years is a long time but we wanted different things
J: want a call later?
S: yes please
"""),
    ("2023-05-14", """
[s_met] S: found a photo from the week we met in lupton halls. first year. we look like babies
J: the fire alarm era
[s_met] S: the night u set off the fire alarm in halls making toast, whole block out in the snow
J: i maintain that toaster was faulty
"""),
    ("2023-05-19 05:10", """
S: airport at 5am. why did i book this flight
J: where u off
[s_trip] S: lisbon!! 5 days of holiday and custard tarts
"""),
    ("2023-05-22", """
[s_trip] S: lisbon update: pastel de nata count is at 11 and my calves hate the hills
J: 11 in 3 days is rookie numbers
"""),
    ("2023-05-30", """
[s_car1,q_fiesta] S: rip the fiesta. the clutch went on the m62
J: noooo. moment of silence
[q_fiesta] S: she's off to the scrapyard in the sky
"""),
    ("2023-06-03", """
[s_plant] S: gerald has a flower!!! four years and he finally bloomed
J: who tf is gerald
[s_plant] S: my cactus?? keep up
J: sorry. congrats to him
"""),
    ("2023-06-08", """
[j_partner1] J: priya and i broke up
S: WHAT. when
[j_breakup] J: sunday. she got the job in edinburgh and neither of us wants long distance
S: i'm so sorry. she was lovely
"""),
    ("2023-06-10", """
[s_car2] S: picked up the new car!! well. new to me. blue 2017 yaris, 40k miles
J: look at u, a grown up
S: it has working aircon. i'm a new woman
"""),
    ("2023-06-16", """
[s_job1,q_notice] S: handed my notice in at grindhouse today
J: !!! for the manchester thing?
S: yep. it's all happening
"""),
    ("2023-06-20", """
[s_city2] S: signed the lease!!! manchester here i come
J: proud of u
[s_moved] S: moving 15th july, i'm already stressed
"""),
    ("2023-06-25", """
[j_parents] J: at mum and dad's in croydon for the weekend
[j_food] J: she made jollof. best food on the planet and i will not be taking questions
S: save me some
"""),
    ("2023-07-02", """
[j_trip] J: BOOKED IT. tokyo and osaka, october
S: AHHH finally
[j_language] J: doing duolingo japanese every day now, 41 day streak
S: say something
J: watashi wa jordan desu
S: fluent
"""),
    ("2023-07-09 08:15", """
S: 10 miles this morning. half marathon training is no joke
J: u are a machine
S: a tired machine
"""),
    ("2023-07-15 21:40", """
[s_area2,s_moved] S: first night in the ancoats flat, sitting on a box eating chips
[s_city2] J: welcome to manchester officially 🎉 how's the new city
S: the cat has been under the bed since we got here
"""),
    ("2023-07-22", """
[j_city] J: come down to bristol, the train's only 3 hrs now
S: end of august i promise
"""),
    ("2023-07-29", """
J: what are we drinking when i come up
[s_drink] S: negroni. always negroni
J: bitter, like u
S: 😂 rude
"""),
    ("2023-08-07 20:20", """
[s_job2] S: first week at the new place done. the bakery on elm st is chaos and i love it
J: do u get to eat the mistakes
[s_job2] S: crumb & co has a very strict no-eating-the-stock policy. i've already broken it
"""),
    ("2023-08-13", """
[s_birthday] S: thirty tomorrow. THIRTY. someone stop this
J: it's just a number
S: a big number
"""),
    ("2023-08-14 07:30", """
[s_birthday] J: HAPPY BIRTHDAY OLD LADY 🎉🎂 welcome to your thirties
S: i feel no different. my back hurts though
"""),
    ("2023-08-17 15:10", """
[j_licence2] J: PASSED MY DRIVING TEST. third time lucky. i am officially a licensed menace
S: JORDAN 🎉🎉 the roads will never be safe again
"""),
    ("2023-08-22 04:20", """
[s_shift] S: 4:15 alarm again, bakery shifts start at 5 and the ovens don't wait
J: why am i awake. why are u awake
S: the bread doesn't care about my feelings
"""),
    ("2023-08-26 10:30", """
S: on the train!! see u at 1
J: i'll be at temple meads with a sign
"""),
    ("2023-09-02", """
[j_car] J: bought mum's old car off her for 500 quid. the corsa lives on
[j_car,s_festival] S: the corsa!! it drove us to leeds festival in 2014
J: it still smells like that festival
[j_commute] J: only for weekends tho, still cycling to work
"""),
    ("2023-09-09 23:20", """
S: ok so. i went on a date
J: SPILL
[s_partner2,s_partner2_job] S: her name's dani and she's a firefighter??
[s_partner2_job] J: a FIREFIGHTER
S: i know
"""),
    ("2023-09-10 15:00", """
[s_run] S: DID IT. finished the great north run in 2:04
J: ICON
S: i cannot feel my legs and i cried at mile 12
"""),
    ("2023-09-18", """
[j_job2,q_start] J: signed the contract for the new job!! \
data analyst at northwind energy, starting 2nd october
[j_job1] S: NO WAY. bye bye hartley & co
J: bye bye formatting police
"""),
    ("2023-09-22", """
[s_brother,s_brother_study] S: dropped leo off in plymouth. his room is the size of a wardrobe
J: did u cry
S: in the car park. twice
"""),
    ("2023-09-24", """
[j_brother,j_brother_study] J: tayo's settled in at leeds, he's joined 4 societies already
S: which ones
J: quidditch is one of them. i have failed as a brother
"""),
    ("2023-10-02", """
[s_veg] S: one month veggie and i don't even miss bacon
S: ok i miss bacon
J: proud of u. what changed
S: too many documentaries
"""),
    ("2023-10-04 18:30", """
[j_job2_perks] J: new job week one: two monitors, free fruit, nobody has mentioned formatting once
S: living the dream
"""),
    ("2023-10-14 17:00", """
[j_partner2] J: third date with marcus tonight
S: THIRD?? why am i only hearing about this now
J: didn't want to jinx it
J: he brought me a book he thought i'd like. who does that
S: a keeper does that
"""),
    ("2023-10-21", """
[s_sport] S: found a climbing wall ten mins from the flat, the forearms are back
J: the cult has reclaimed u
"""),
    ("2023-10-23", """
[j_trip] J: osaka > tokyo, fight me
J: ate my body weight in takoyaki
S: jealous beyond words
"""),
    ("2023-10-28", """
[s_partner2] S: dani's moving her stuff in this weekend. \
first time living with a girlfriend. is that fast
J: it's been 7 weeks
S: that's a yes then
"""),
    ("2023-11-04", """
[j_area2] J: keys collected!!! the bedminster flat is mine, moving in saturday
S: AHHH
J: 2 beds, actual garden
S: room for a dog 👀
J: don't tempt me
"""),
    ("2023-11-12", """
[j_dog,j_dog_breed,q_jpets] J: meet pickle. rescue whippet, 3 years old, scared of everything
J: <Media omitted>
S: I'M CRYING. that face
[j_cat,q_jpets] J: miso is furious
"""),
    ("2023-11-19 06:40", """
[s_niece] S: IVY ROSE IS HERE 💕 7lb 2oz, my niece is perfect
[s_sister] S: maya did amazing, 14 hours
J: CONGRATULATIONS AUNTIE SAM 😭
"""),
    ("2023-11-26", """
[s_study] S: passed my psychology module!!! 68
J: look at u. dr sam
S: one down, five to go
"""),
    ("2023-12-02 21:00", """
[j_partner2] J: marcus met my mum today
J: she called him "a tall glass of water" to his face
S: i love her
"""),
    ("2023-12-16", """
[j_christmas] J: flying to lagos on the 21st to see grandma for christmas
S: first time in ages right?
J: six years. she's already planned every meal
"""),
]  # fmt: skip

# Hints for the q_* tags below (the messages they tag contain one).
Q_HINTS = {
    "q_siblings": ("maya", "leo"),
    "q_fiesta": ("fiesta", "scrapyard"),
    "q_notice": ("notice",),
    "q_start": ("october",),
    "q_jpets": ("miso", "pickle"),
}
# (question, answer, tags[, key]): the evidence is every message tagged with one of the tags (fact
# ids, or q_* tags for a question that needs only some of a fact's messages, or several facts');
# the key is the first fact's unless given.
QUESTIONS: list[tuple] = [
    ("Where does Sam work now?", "Crumb & Co, a bakery on Elm Street", ("s_job2",)),
    ("Where did Sam work before the bakery?", "Grindhouse, a coffee shop (barista)", ("s_job1",)),
    ("When did Sam hand in her notice at the coffee shop?", "16 June 2023", ("q_notice",)),
    ("What time does Sam have to start work at the bakery?", "5am (alarm at 4:15)", ("s_shift",)),
    ("Which city does Sam live in now?", "Manchester", ("s_city2",)),
    ("Which city did Sam live in before she moved?", "Leeds", ("s_city1",)),
    ("Which part of Manchester does Sam live in?", "Ancoats", ("s_area2",)),
    ("Which neighbourhood did Sam live in before moving?", "Headingley (Leeds)", ("s_area1",)),
    ("When did Sam move to Manchester?", "15 July 2023", ("s_moved",)),
    ("What was the name of Sam's flatmate in Leeds?", "Hugo", ("s_flatmate",)),
    ("Who is Sam's partner now?", "Dani", ("s_partner2",)),
    ("Who was Sam's partner before Dani?", "Alex", ("s_partner1",)),
    ("How long were Sam and Alex together?", "two years", ("s_partner1_len",)),
    ("What does Sam's girlfriend do for a living?", "she is a firefighter", ("s_partner2_job",)),
    ("What is Sam's sister called?", "Maya", ("s_sister",)),
    ("What is Sam's sister's job?", "midwife", ("s_sister_job",)),
    ("What are the names of Sam's siblings?", "Maya and Leo", ("q_siblings",), "siblings"),
    ("What is the name of Sam's niece?", "Ivy Rose", ("s_niece",)),
    ("When was Sam's niece born?", "19 November 2023", ("s_niece",)),
    ("What is Sam's brother called?", "Leo", ("s_brother",)),
    ("What does Sam's brother study, and where?", "marine biology in Plymouth",
     ("s_brother_study",)),
    ("What is the name of Sam's cat?", "Biscuit", ("s_cat",)),
    ("When is Sam's birthday?", "14 August", ("s_birthday",)),
    ("How old did Sam turn in 2023?", "30", ("s_birthday",)),
    ("What is Sam allergic to?", "peanuts", ("s_allergy",)),
    ("What car does Sam drive now?", "a blue 2017 Toyota Yaris", ("s_car2",)),
    ("What car did Sam have before the Yaris?", "an old Ford Fiesta", ("s_car1",)),
    ("What happened to Sam's old car?", "its clutch went on the M62; it was scrapped",
     ("q_fiesta",)),
    ("What sport does Sam do for fun?", "bouldering / climbing", ("s_sport",)),
    ("What is Sam's favourite food?", "pho", ("s_food",)),
    ("Does Sam eat meat these days?", "no, vegetarian since September 2023", ("s_veg",)),
    ("What is Sam studying?", "psychology with the Open University", ("s_study",)),
    ("Where did Sam go on holiday in May?", "Lisbon", ("s_trip",)),
    ("Which band did Sam see live?", "Wet Leg", ("s_concert",)),
    ("Where do Sam's parents live?", "Sheffield", ("s_parents",)),
    ("What tattoo did Sam get?", "a small fern on her left forearm", ("s_tattoo",)),
    ("What is Sam's cactus called?", "Gerald", ("s_plant",)),
    ("Which half marathon did Sam run?", "the Great North Run", ("s_run",)),
    ("How long did it take Sam to finish the half marathon?", "2 hours 4 minutes", ("s_run",)),
    ("What is Sam's usual cocktail?", "a negroni", ("s_drink",)),
    ("Where did Sam and Jordan meet?", "in first-year halls (Lupton) at university", ("s_met",)),
    ("Which festival did Sam and Jordan go to in 2014?", "Leeds Festival", ("s_festival",)),
    ("What is Jordan's job now?", "data analyst at Northwind Energy", ("j_job2",)),
    ("Where did Jordan work before his current job?", "Hartley & Co (junior accountant)",
     ("j_job1",)),
    ("When did Jordan start his new job?", "2 October 2023", ("q_start",)),
    ("What does Jordan like about his new job?", "two monitors, free fruit, no one nags",
     ("j_job2_perks",)),
    ("What was the name of Jordan's old boss?", "Graham", ("j_boss",)),
    ("Which professional exams was Jordan sitting?", "ACCA", ("j_exams",)),
    ("Which city does Jordan live in?", "Bristol", ("j_city",)),
    ("Which part of Bristol does Jordan live in now?", "Bedminster", ("j_area2",)),
    ("Which area of Bristol did Jordan live in before?", "Easton", ("j_area1",)),
    ("Who is Jordan dating now?", "Marcus", ("j_partner2",)),
    ("Who was Jordan going out with at the start of 2023?", "Priya", ("j_partner1",)),
    ("Why did Jordan and Priya split up?", "she took a job in Edinburgh, no long distance",
     ("j_breakup",)),
    ("What did Jordan do on Valentine's Day?", "a pottery class with Priya", ("j_valentine",)),
    ("What is Jordan's cat called?", "Miso", ("j_cat",)),
    ("What is the name of Jordan's dog?", "Pickle", ("j_dog",)),
    ("What breed is Jordan's dog?", "a (rescue) whippet", ("j_dog_breed",)),
    ("What pets does Jordan have?", "a cat, Miso, and a whippet, Pickle", ("q_jpets",)),
    ("What is Jordan's brother called?", "Tayo", ("j_brother",)),
    ("What is Jordan's brother studying?", "computer science at Leeds", ("j_brother_study",)),
    ("When is Jordan's birthday?", "3 March", ("j_birthday",)),
    ("How old did Jordan turn in 2023?", "29", ("j_birthday",)),
    ("What food does Jordan have to avoid?", "dairy", ("j_lactose",)),
    ("What does Jordan do on Thursday nights?", "five-a-side football", ("j_football",)),
    ("How did Jordan break his wrist?", "playing five-a-side football", ("j_injury",)),
    ("Which football club does Jordan support?", "Arsenal", ("j_team",)),
    ("Where did Jordan go on holiday in October?", "Japan: Tokyo and Osaka", ("j_trip",)),
    ("What language is Jordan learning?", "Japanese", ("j_language",)),
    ("What is Jordan's favourite food?", "his mum's jollof rice", ("j_food",)),
    ("Where do Jordan's parents live?", "Croydon", ("j_parents",)),
    ("What instrument does Jordan play?", "bass", ("j_instrument",)),
    ("What is the name of Jordan's band?", "The Soft Exits", ("j_band",)),
    ("Can Jordan drive now?", "yes, passed his test in August 2023", ("j_licence2",)),
    ("Did Jordan have a driving licence in March 2023?", "no (second test in April)",
     ("j_licence1",)),
    ("How many attempts did it take Jordan to pass his driving test?", "three",
     ("j_licence2",)),
    ("What car does Jordan have?", "his mum's old Vauxhall Corsa", ("j_car",)),
    ("How does Jordan get to work?", "he cycles", ("j_commute",)),
    ("Where is Jordan spending Christmas 2023?", "Lagos, with his grandma", ("j_christmas",)),
]  # fmt: skip

# -- small talk ------------------------------------------------------------------------------
# Scenes between A and B (Sam and Jordan in either role), with {slots} filled from SLOTS.
SCENES = [
    "A: did u watch {show} yet\nB: no spoilers!!\nA: i'm saying nothing. just. episode {n}\nB: 😭",
    "A: what r u having for tea\nB: {meal} probably\nA: living the dream\nB: lol",
    "A: still on for our call {day}?\nB: yes! {time}?\nA: perfect\nA: ok see u then",
    "A: <Media omitted>\nB: LMAO\nB: where did u find that\nA: the group chat never disappoints",
    "A: the weather is actually insane today\nB: it's {weather} here\nA: classic",
    "A: i need a new {item}, recs?\nB: honestly just get whatever's on offer\nA: helpful thanks"
    "\nB: 😂",
    "A: so tired today\nB: same\nB: have u tried {sleep_tip}\nA: no but i've tried scrolling for 3 "
    "hours",
    "A: how's ur week going\nB: {mood}\nA: haha fair\nB: urs?\nA: {mood}",
    "A: omg i just remembered {memory}\nB: NO\nB: why would u bring that up\nA: 😂😂",
    "A: did u get my voice note\nB: yeah sorry, listening now\nB: LOL yes agreed",
    "A: phone on 3%\nA: will text later\nB: ok x",
    "A: quick q what's the {kind} we watched at christmas\nB: {title}?\nA: YES thank u",
    "A: been to 3 shops and none of them have {item2}\nB: online?\nA: i want it today tho\nB: "
    "patience is a virtue\nA: not one of mine",
    "A: what are u up to this weekend\nB: not much, {weekend}\nA: sounds nice\nB: u?\nA: same "
    "really, might go for a walk",
    "A: is it friday yet\nB: no\nB: 😩",
    "A: i've started {habit}\nB: since when\nA: since this morning\nB: lol ok",
    "A: do u want anything from the shop\nA: wait wrong chat\nB: 😂\nB: i'll take a {snack} if "
    "ur offering",
    "A: the group chat is going feral\nB: i muted it\nB: what did i miss\nA: honestly nothing "
    "worth unmuting",
    "A: mondays should be illegal\nB: agree\nB: sign me up for the petition",
    "A: ok i did something dumb\nB: go on\nA: {dumb}\nB: iconic",
    "A: how did it go??\nB: fine i think?\nB: will know next week\nA: fingers crossed 🤞",
    "A: have u still got netflix\nB: yeah why\nA: want to watch {show}\nB: use mine, password "
    "hasn't changed",
    "A: reminder to drink water\nB: thanks mum\nA: 💧",
    "A: should i get a fringe\nB: no\nA: ok\nB: we've been through this",
    "A: can u call me later? nothing bad\nB: sure, after {time} ok?\nA: 👍",
    "A: {news}\nB: wait really\nA: yeah saw it this morning\nB: wild",
    "A: just walked past someone who looked exactly like {celeb}\nB: was it them\nA: in a lidl? "
    "doubt it\nB: u never know",
    "A: my landlord finally fixed the boiler\nB: only took {n} weeks\nA: a miracle",
    "A: what's that song that goes {hum}\nB: i genuinely cannot help with that\nA: useless",
    "A: do u think {question}\nB: absolutely not\nA: ok good same",
    "A: i've eaten nothing but {snack}s today\nB: balanced diet\nA: it has {group} in it "
    "technically",
    "A: it's so quiet at work today\nB: enjoy it\nA: i'm scared it's the calm before the storm",
    "A: meeting that could've been an email: part {n}\nB: 😩",
    "A: remember to send me that {kind}\nB: oh god yes sorry\nB: <Media omitted>\nA: legend",
    "A: ok but what do we think about {take}\nB: controversial\nB: but correct",
    "A: tried that recipe u sent\nB: and?\nA: {recipe}\nB: 😂 close enough",
    "A: my mum just discovered {app}\nB: oh no\nA: she's sent me 14 videos already",
    "A: {weather_moan}\nB: stay in, it's allowed",
    "A: the train is delayed again\nB: classic\nA: 40 minutes. forty.\nB: bring a book next time",
    "A: just realised it's been {years} years since {event}\nB: don't\nB: that makes me feel "
    "ancient",
    "A: pizza or curry tonight\nB: curry\nA: pizza it is\nB: why ask 😂",
    "A: got anything planned for the bank holiday\nB: not yet, u?\nA: nope, sofa probably\nB: "
    "the dream",
    "A: i cleaned the whole flat\nB: who are u\nA: a changed person",
    "A: is it weird to {weird}\nB: yes\nA: ok doing it anyway",
    "A: guess who messaged me\nB: who\nA: {someone}\nB: NO\nB: what did they want\nA: to "
    '"catch up"\nB: 🚩',
    "A: reading {book} finally\nB: ooh is it good\nA: ask me in 300 pages",
    "A: just had the best {dish} of my life\nB: where\nA: some place near {place}\nB: take me "
    "next time",
    "A: i need a haircut so badly\nB: same, i look like a mop\nA: a mop with character",
    "A: new phone case who dis\nB: 😂\nB: finally replaced the cracked one?\nA: yes, 2 years late",
    "A: aaaand i locked myself out\nB: how\nA: door shut, keys inside, me outside\nB: spare "
    "with a neighbour?\nA: waiting for a locksmith",
    "A: watch party {day}? {show}\nB: yes. {time}?\nA: deal, i'll press play at exactly {time}",
    "A: <Media omitted>\nB: that is the ugliest {item} i've ever seen\nA: i bought it\nB: and "
    "i stand by what i said",
    "A: my neighbour is hoovering at {time} on a {day}\nB: report them\nA: to who, the hoover "
    "police",
    "A: ok tell me something good\nB: {good}\nA: i'll take it",
    "A: my back hurts from sleeping wrong\nB: we're so old\nA: speak for urself\nB: u literally "
    "just said ur back hurts",
    "A: this message was meant for my mum\nB: lol i want to know what it said now\nA: no",
    "A: u free for a call tomorrow at {time}?\nB: make it 10 mins later\nA: ok",
    "A: bought too many {snack}s again\nB: post some up\nA: they won't survive the post",
    "A: the cost of {thing} now is actually criminal\nB: i know\nB: i paid {price} last week",
]
SLOTS = {
    "show": ["the bear", "the last of us", "severance", "slow horses", "ted lasso",
             "the white lotus", "happy valley", "beef", "taskmaster", "the traitors", "succession"],
    "n": ["2", "3", "4", "5", "6", "7"],
    "meal": ["pasta again", "beans on toast", "a sad salad", "leftover curry", "cereal",
             "a stir fry", "whatever's in the freezer", "toast. just toast", "noodles"],
    "day": ["saturday", "sunday", "friday", "thursday", "tuesday", "wednesday"],
    "time": ["7", "half 7", "8", "6ish", "9", "half 8"],
    "weather": ["grey and miserable", "boiling", "chucking it down", "weirdly sunny",
                "freezing", "foggy"],
    "item": ["kettle", "rucksack", "pair of trainers", "phone case", "winter coat",
             "desk chair", "lamp", "umbrella"],
    "sleep_tip": ["counting sheep", "that rain noise app", "not drinking coffee at 9pm",
                  "reading something boring"],
    "mood": ["surviving", "chaotic", "honestly fine", "long", "weirdly good", "a lot",
             "one of those weeks", "meh"],
    "memory": ["the karaoke night", "that house party with the goat",
               "when u fell in the canal", "the tent that blew away",
               "the quiz where we came last", "the haircut of 2016"],
    "kind": ["film", "documentary", "show", "video"],
    "title": ["knives out", "fleabag", "the tinder swindler", "paddington 2", "the holiday"],
    "item2": ["AA batteries", "a decent umbrella", "birthday candles", "shoe polish",
              "the good crisps", "envelopes"],
    "weekend": ["laundry and sleep", "seeing some friends", "a big shop", "cleaning probably",
                "a long walk", "absolutely nothing and i'm thrilled"],
    "habit": ["journaling", "cold showers", "getting up at 6", "meal prepping",
              "reading before bed", "stretching"],
    "snack": ["kitkat", "bag of crisps", "flapjack", "meal deal", "biscuit", "bagel"],
    "dumb": ["replied 'you too' when the waiter said enjoy your meal",
             "wore my jumper inside out all day", "walked into a glass door. in public",
             "sent a voice note of me singing to the wrong person",
             "waved at someone who was waving at the person behind me"],
    "news": ["they're closing the cinema on the high street", "petrol's gone up again",
             "the tickets sold out in 4 minutes", "they're bringing back the old crisps"],
    "celeb": ["paul mescal", "nigella", "harry styles", "gordon ramsay", "mary berry"],
    "hum": ["na na na naaa something about a boat", "da da da dum, from the advert",
            "ooh ooh baby something"],
    "question": ["pigeons have feelings", "we'd survive a zombie apocalypse", "cereal is soup",
                 "we'd win a pub quiz now"],
    "group": ["fruit", "veg", "protein", "fibre"],
    "take": ["pineapple on pizza", "socks with sandals",
             "people who clap when the plane lands", "voice notes over 2 minutes"],
    "recipe": ["the smoke alarm went off twice", "it looked nothing like the photo",
               "it was actually amazing??", "it was soup. it wasn't meant to be soup"],
    "app": ["tiktok", "facebook reels", "voice notes", "gifs"],
    "weather_moan": ["why is it so windy", "the rain is going sideways", "the heating has given up",
                     "it's dark at 4pm, i hate this"],
    "years": ["10", "8", "12", "11"],
    "event": ["we finished school", "that festival with the mud", "freshers week",
              "the great flat flood"],
    "weird": ["eat cereal at 10pm", "wear sunglasses indoors", "name my bike",
              "clap when a film ends"],
    "someone": ["my ex from sixth form", "that guy from the wedding", "my old manager",
                "the girl who stole my bike in 2017"],
    "book": ["the secret history", "normal people", "dune", "piranesi", "middlemarch"],
    "dish": ["pizza", "burger", "dumplings", "curry", "fried chicken", "toastie"],
    "place": ["the station", "the canal", "the market", "the high street", "the park"],
    "good": ["found a tenner in my coat", "the sun came out for 10 mins",
             "my bus came on time", "someone let me in at a junction"],
    "thing": ["a pint", "a coffee", "a cinema ticket", "train tickets"],
    "price": ["£6.80", "£4.20", "£14", "£38"],
}  # fmt: skip
OPENERS = ["hiii", "morning", "u up?", "ok so", "hey", "oi", "quick one", "hello hello",
           "<Media omitted>", "guess what", "yo"]  # fmt: skip
REACTIONS = ["lol", "haha", "hahaha", "😂", "😂😂", "omg", "same", "fair", "true", "love that",
             "💀", "ha", "👍", "❤️", "amazing", "lmao", "This message was deleted"]  # fmt: skip
CLOSERS = ["ok gotta go", "night x", "ttyl", "speak soon", "x", "ok see u", "going to sleep, night",
           "byeee", "love u bye", "right, back to it", "ok see u later"]  # fmt: skip
GAPS = (0, 0, 0, 1, 1, 1, 2, 2, 3, 4, 6, 9)  # minutes between messages in a session
_TAGGED = re.compile(r"^(?:\[([\w,]+)\]\s*)?([SJ]):\s(.+)$")
_STOP_WORDS = """a an the and or but of to in on at for from by with about as is are was were be
    been do does did have has had i you he she it we they me him her them my your his its our their
    what which who whom whose when where why how this that these those there here now then
    still ever any some just so not no yes can could would should will before after sam jordan
    sam's jordan's 2023 new"""
_STOP = frozenset(_STOP_WORDS.split())


@dataclass
class Record:
    """One line of chat.txt: its 1-based number, the message's ISO time, sender and text (the
    sender is None for the encryption notice)."""

    line: int
    timestamp: str
    sender: str | None
    text: str


@dataclass
class MemorySet:
    lines: list[str]
    records: list[Record]
    questions: list[dict] = field(default_factory=list)
    facts: list[dict] = field(default_factory=list)

    @property
    def chat_text(self) -> str:
        return "\n".join(self.lines) + "\n"

    @property
    def messages(self) -> int:
        """Messages by the two people (the notice left out)."""
        return sum(r.sender is not None for r in self.records)

    def write(self, folder: Path | str) -> Path:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "chat.txt").write_text(self.chat_text, encoding="utf-8")
        for name, rows in (("questions.jsonl", self.questions), ("facts.jsonl", self.facts)):
            text = "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)
            (folder / name).write_text(text, encoding="utf-8")
        return folder / "chat.txt"


# -- building ----------------------------------------------------------------------------------


def _parse(block: str) -> list[tuple[str, str, tuple[str, ...]]]:
    """(speaker S/J, text, tags) for each line of an episode."""
    out = []
    for line in block.strip().splitlines():
        match = _TAGGED.match(line)
        if not match:
            raise ValueError(f"episode line {line!r} is not '[tags] S|J: text'")
        tags, speaker, text = match.groups()
        out.append((speaker, text, tuple(tags.split(",")) if tags else ()))
    return out


def _scene(rng: random.Random) -> list[tuple[str, str, tuple[str, ...]]]:
    a = rng.choice("SJ")
    b = "J" if a == "S" else "S"
    picks: dict[str, str] = {}

    def fill(match: re.Match[str]) -> str:  # one value per slot name in a scene
        name = match.group(1)
        if name not in picks:
            picks[name] = rng.choice(SLOTS[name])
        return picks[name]

    lines = []
    for line in rng.choice(SCENES).split("\n"):
        speaker, text = line.split(": ", 1)
        lines.append((a if speaker == "A" else b, re.sub(r"\{(\w+)\}", fill, text), ()))
    return lines


def _session(
    rng: random.Random, episodes: list[list[tuple[str, str, tuple[str, ...]]]], fixed: bool
) -> list[tuple[str, str, tuple[str, ...]]]:
    """One day's messages: an opener, small talk with the day's episodes among it, reactions
    and a closer. A session with a fixed start time begins with its first episode."""
    other = {"S": "J", "J": "S"}
    parts = list(episodes)
    scenes = rng.randint(0, 2) if episodes else rng.randint(2, 4)
    for _ in range(scenes):
        start = 1 if fixed and parts else 0
        parts.insert(rng.randint(start, len(parts)), _scene(rng))
    out: list[tuple[str, str, tuple[str, ...]]] = []
    if not fixed and rng.random() < 0.5:
        out.append((rng.choice("SJ"), rng.choice(OPENERS), ()))
    for lines in parts:
        out.extend(lines)
        if rng.random() < 0.4:  # a reaction after a scene or an episode
            out.append((other[out[-1][0]], rng.choice(REACTIONS), ()))
    if rng.random() < 0.6:
        out.append((rng.choice("SJ"), rng.choice(CLOSERS), ()))
    return out


def _episodes_by_day(shift_years: int = 0) -> dict[date, tuple[int | None, list]]:
    days: dict[date, tuple[int | None, list]] = {}
    for when, block in EPISODES:
        day = date.fromisoformat(when[:10])
        day = day.replace(year=day.year + shift_years)
        start = int(when[11:13]) * 60 + int(when[14:16]) if len(when) > 10 else None
        if day in days:
            days[day][1].append(_parse(block))
        else:
            days[day] = (start, [_parse(block)])
    return days


def _chat(
    rng: random.Random, first: date, last: date, shift_years: int, filler: int
) -> list[tuple[datetime, str, str, tuple[str, ...]]]:
    """(time, speaker, text, tags) for every message of one year of the chat."""
    episodes = _episodes_by_day(shift_years)
    span = (last - first).days
    free = [first + timedelta(d) for d in range(span + 1)]
    free = [d for d in free if d not in episodes]
    days = {d: (None, []) for d in rng.sample(free, filler)}
    days.update(episodes)
    messages = []
    for day in sorted(days):
        start, day_episodes = days[day]
        lines = _session(rng, day_episodes, start is not None)
        gaps = [0] + [rng.choice(GAPS) for _ in lines[1:]]
        length = sum(gaps)
        if start is None:
            start = rng.randint(8 * 60, 22 * 60)
        start = max(0, min(start, 23 * 60 + 59 - length))
        minute = start
        for (speaker, text, tags), gap in zip(lines, gaps, strict=True):
            minute += gap
            when = datetime.combine(day, datetime.min.time()) + timedelta(minutes=minute)
            messages.append((when, speaker, text, tags))
    return messages


def _stamp(when: datetime) -> str:
    return when.strftime("%d/%m/%Y, %H:%M")


def _words(text: str) -> set[str]:
    words = re.findall(r"[a-z0-9']+", text.lower())
    return {w.rstrip("s").removesuffix("'") for w in words if w not in _STOP and len(w) > 2}


def build_set(seed: int = 0) -> MemorySet:
    """The chat, its questions and its facts for `seed`: byte-identical for the same seed."""
    rng = random.Random(seed)
    messages = _chat(rng, FIRST_DAY, LAST_DAY, 0, FILLER_SESSIONS)
    start = messages[0][0] - timedelta(minutes=1)
    lines = [f"{_stamp(start)} - {NOTICE}"]
    records = [Record(1, start.isoformat(), None, NOTICE)]
    tagged: dict[str, list[int]] = {}
    for when, speaker, text, tags in messages:
        lines.append(f"{_stamp(when)} - {WHO[speaker]}: {text}")
        records.append(Record(len(lines), when.isoformat(), WHO[speaker], text))
        for tag in tags:
            tagged.setdefault(tag, []).append(len(lines))
    unknown = set(tagged) - set(FACTS) - {t for q in QUESTIONS for t in q[2]}
    if unknown:
        raise ValueError(f"episodes tag unknown facts or questions: {sorted(unknown)}")
    replaced_by = {spec[4]: fid for fid, spec in FACTS.items() if spec[4]}
    changed = set(replaced_by) | set(replaced_by.values())

    def day_of(line: int) -> str:
        return records[line - 1].timestamp[:10]

    facts = []
    for fid, (who, key, value, hints, replaces) in FACTS.items():
        evidence = tagged.get(fid, [])
        if not evidence:
            raise ValueError(f"fact {fid} has no message")
        for line in evidence:
            if not any(h in records[line - 1].text.lower() for h in hints):
                raise ValueError(f"line {line} is evidence for {fid} but has none of {hints}")
        successor = replaced_by.get(fid)
        facts.append({
            "id": fid, "person": WHO[who], "key": key, "value": value, "evidence": evidence,
            "valid_from": day_of(evidence[0]),
            "valid_until": day_of(tagged[successor][0]) if successor else None,
            "superseded": successor is not None, "replaces": replaces,
        })  # fmt: skip
    questions = []
    for n, (question, answer, tags, *key) in enumerate(QUESTIONS, 1):
        evidence = sorted({line for tag in tags for line in tagged.get(tag, [])})
        fact_ids = [t for t in tags if t in FACTS] or sorted(
            {f for line in evidence for f in FACTS if line in tagged.get(f, [])}
        )
        first = FACTS[fact_ids[0]]
        when = None
        if first[4]:
            when = "now"
        elif fact_ids[0] in replaced_by:
            when = "before"
        hints = sorted({h for t in tags for h in (FACTS[t][3] if t in FACTS else Q_HINTS[t])})
        for line in evidence:
            if not any(h in records[line - 1].text.lower() for h in hints):
                raise ValueError(f"line {line}, evidence for {question!r}, has none of {hints}")
        shared = _words(question) & set().union(*(_words(records[i - 1].text) for i in evidence))
        questions.append({
            "id": f"q{n:02d}", "question": question, "answer": answer, "person": WHO[first[0]],
            "key": key[0] if key else first[1], "evidence": evidence,
            "changed": bool(changed & set(fact_ids)), "when": when, "hints": hints,
            "facts": fact_ids, "shares_word": bool(shared),
        })  # fmt: skip
    return MemorySet(lines, records, questions, facts)


def build_chat(n_messages: int, seed: int = 0) -> str:
    """A WhatsApp export of exactly `n_messages` messages of the same kind: the year of the set
    repeated with fresh small talk and times (more filler days each year), years going back
    from 2023, oldest first. For search latency on a large chat."""
    years: list[list] = []
    total, shift = 0, 0
    while total < n_messages:
        rng = random.Random(f"{seed}/{shift}")
        first, last = FIRST_DAY.replace(year=2023 + shift), LAST_DAY.replace(year=2024 + shift)
        year = _chat(rng, first, last, shift, 3 * FILLER_SESSIONS)
        years.append(year)
        total += len(year)
        shift -= 1
    messages = [m for year in reversed(years) for m in year][:n_messages]
    lines = [f"{_stamp(when)} - {WHO[speaker]}: {text}" for when, speaker, text, _ in messages]
    return "\n".join(lines) + "\n"


def main(argv: list[str]) -> int:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--messages", type=int, help="write only a chat.txt of N messages")
    args = parser.parse_args(argv)
    if args.messages:
        args.out_dir.mkdir(parents=True, exist_ok=True)
        path = args.out_dir / "chat.txt"
        path.write_text(build_chat(args.messages, args.seed), encoding="utf-8")
        print(f"{path}: {args.messages} messages")
        return 0
    built = build_set(args.seed)
    path = built.write(args.out_dir)
    print(f"{path}: {built.messages} messages, {len(built.questions)} questions, "
          f"{len(built.facts)} facts")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
