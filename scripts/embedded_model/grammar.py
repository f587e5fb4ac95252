"""A small seeded grammar of everyday English, written for this project.

The packaged sources (fortunes, WordNet examples, Bierce) are varied but rarely look like the
prompts the app uses: reviews, requests, questions, story starts and opinions. This grammar
writes short documents of those kinds, with a tone (warm, neutral, cold) chosen per document so
that the base model learns to continue a prompt in more than one way. That spread is what the
MORL objectives (sentiment, brevity, formality, ...) later pull apart.

Every rule is a list of alternatives; ``{name}`` expands another rule. All text here was written
for this project and is released with it under the project's licence.
"""

from __future__ import annotations

import random
import re

RULES: dict[str, list[str]] = {
    # --- shared pieces ---
    "person": [
        "my sister",
        "my brother",
        "my friend",
        "my neighbour",
        "my mother",
        "my father",
        "a colleague",
        "my partner",
        "my uncle",
        "my aunt",
        "our teacher",
        "a friend of mine",
        "my grandmother",
        "my cousin",
        "my roommate",
    ],
    "people": [
        "families",
        "students",
        "anyone on a budget",
        "couples",
        "small groups",
        "tourists",
        "people who like quiet places",
        "beginners",
        "older visitors",
        "busy parents",
        "friends looking for a night out",
        "anyone in the area",
    ],
    "time": [
        "last week",
        "yesterday",
        "on Saturday",
        "last month",
        "this morning",
        "on Friday night",
        "a few days ago",
        "over the weekend",
        "last summer",
        "on my birthday",
        "after work",
    ],
    "place": [
        "cafe",
        "restaurant",
        "hotel",
        "bakery",
        "bookshop",
        "museum",
        "park",
        "gym",
        "library",
        "pizza place",
        "market",
        "cinema",
        "noodle bar",
        "garden centre",
        "hostel",
    ],
    "product": [
        "phone",
        "laptop",
        "blender",
        "coffee maker",
        "backpack",
        "pair of shoes",
        "desk lamp",
        "kettle",
        "bike",
        "jacket",
        "tent",
        "headset",
        "vacuum cleaner",
        "watch",
        "camera",
    ],
    "food": [
        "soup",
        "bread",
        "pasta",
        "coffee",
        "cake",
        "salad",
        "curry",
        "tea",
        "pizza",
        "ramen",
        "sandwich",
        "pie",
        "fish",
        "rice",
        "dessert",
    ],
    "city": [
        "the city",
        "town",
        "the old quarter",
        "the village",
        "the harbour",
        "the market square",
        "the north side",
        "the river district",
        "the high street",
    ],
    "topic": [
        "working from home",
        "public transport",
        "social media",
        "learning a second language",
        "remote schools",
        "electric cars",
        "reading before bed",
        "cooking at home",
        "team sports",
        "long walks",
        "online shopping",
        "city parks",
        "homework",
        "getting up early",
        "video games",
        "gardening",
        "travelling alone",
    ],
    "activity": [
        "learn to cook",
        "save money",
        "sleep better",
        "start running",
        "learn a language",
        "keep a garden",
        "write a short story",
        "study for an exam",
        "make new friends",
        "plan a trip",
        "stay focused at work",
        "bake bread",
        "fix a bike",
        "read more books",
    ],
    "character": [
        "a young fox",
        "an old sailor",
        "a small girl named Mia",
        "a tired baker",
        "a boy named Sam",
        "a curious robot",
        "a quiet shepherd",
        "an old woman",
        "a little mouse",
        "a brave knight",
        "a lonely giant",
        "a clever crow",
        "a young doctor",
        "a travelling musician",
        "a shy dragon",
    ],
    "setting": [
        "a village by the sea",
        "a small town in the hills",
        "a house at the edge of the forest",
        "a busy city",
        "a cottage near the river",
        "a castle on a hill",
        "a farm far from town",
        "a tiny island",
        "an old lighthouse",
        "a quiet valley",
    ],
    # --- tone-dependent adjectives and phrases ---
    "adj_warm": [
        "great",
        "lovely",
        "wonderful",
        "excellent",
        "friendly",
        "delightful",
        "fantastic",
        "pleasant",
        "charming",
        "superb",
        "cosy",
        "perfect",
        "amazing",
        "nice",
    ],
    "adj_cold": [
        "terrible",
        "awful",
        "disappointing",
        "poor",
        "rude",
        "dirty",
        "boring",
        "bad",
        "slow",
        "cold",
        "noisy",
        "overpriced",
        "dreadful",
        "unpleasant",
    ],
    "adj_flat": [
        "fine",
        "average",
        "okay",
        "ordinary",
        "simple",
        "plain",
        "decent",
        "standard",
        "small",
        "quiet",
        "busy",
        "modest",
    ],
    "staff_warm": [
        "The staff were kind and helpful.",
        "The owner greeted us with a smile.",
        "Our waiter was friendly and quick.",
        "Everyone made us feel welcome.",
        "The people who work there really care.",
    ],
    "staff_cold": [
        "The staff were rude and slow.",
        "Nobody came to help us for twenty minutes.",
        "Our waiter forgot our order twice.",
        "The manager did not seem to care.",
        "The service was careless from start to finish.",
    ],
    "staff_flat": [
        "The staff were polite.",
        "Service was quick enough.",
        "We ordered at the counter.",
        "There were only two people working.",
    ],
    "verdict_warm": [
        "I would happily go back.",
        "I would recommend it to {people}.",
        "We will definitely return.",
        "It is worth every penny.",
        "It made my whole day better.",
        "Five stars from me.",
    ],
    "verdict_cold": [
        "I will not go back.",
        "I would not recommend it to anyone.",
        "Save your money and go somewhere else.",
        "What a waste of an evening.",
        "It was not worth the price.",
        "One star, and that is generous.",
    ],
    "verdict_flat": [
        "It was fine for a quick visit.",
        "It is good enough if you are nearby.",
        "I might go back if I am in the area.",
        "It did the job.",
        "Nothing special, but nothing wrong either.",
    ],
    "feel_warm": ["happy", "grateful", "calm", "proud", "excited", "hopeful", "glad"],
    "feel_cold": ["sad", "angry", "tired", "lonely", "worried", "annoyed", "afraid"],
    "feel_flat": ["curious", "busy", "quiet", "thoughtful", "unsure", "ready"],
    # --- reviews ---
    "review": [
        "The {place} was {adj}. {staff} The {food} was {adj} and the prices were {adj_flat}. {verdict}",
        "I visited this {place} {time} with {person}. {staff} {verdict}",
        "I bought this {product} {time}. It is {adj} and it works {how}. {verdict}",
        "This {product} is {adj}. The battery lasts {duration}, and the design is {adj}. {verdict}",
        "We stayed at the hotel for {nights} nights. The room was {adj} and the bed was {adj}. {staff} {verdict}",
        "The {food} here is {adj}. {staff} {verdict}",
        "My {product} arrived {time}. The box was {adj_flat}, but the {product} itself is {adj}. {verdict}",
        "I have been coming to this {place} for years. {staff} The {food} is always {adj}. {verdict}",
    ],
    "how": [
        "well",
        "better than I expected",
        "most of the time",
        "quietly",
        "perfectly",
        "badly",
        "only some of the time",
    ],
    "duration": ["all day", "about two days", "less than an hour", "a whole week", "a few hours"],
    "nights": ["two", "three", "four", "five", "seven"],
    # --- requests and replies ---
    "request": [
        "Could you help me {activity}? {reply}",
        "Please tell me how to {activity}. {reply}",
        "Can you give me some advice? I want to {activity}. {reply}",
        "I need help. I want to {activity}, but I do not know where to start. {reply}",
        "Write a short note to {person} about {topic}. {note}",
        "Please write a thank you note to {person}. {thanks}",
    ],
    "reply": [
        "Sure. {step} Then {step_lc} Finally, {step_lc}",
        "Of course. Start small. {step} After a week, {step_lc}",
        "Here is a simple plan. {step} {step} {closing}",
        "Yes, I can help. {step} {closing}",
        "Good question. {step} Most people find that {step_lc}",
    ],
    "step": [
        "Set aside twenty minutes each day.",
        "Write down one clear goal.",
        "Ask a friend to join you.",
        "Begin with the easiest part first.",
        "Keep a small notebook and track your progress.",
        "Try to do a little every morning.",
        "Find a quiet place where you can focus.",
        "Read one short guide before you begin.",
        "Do not worry about mistakes at the start.",
        "Take a short break every hour.",
        "Make a list of what you need.",
        "Choose a time that fits your week.",
    ],
    "closing": [
        "You will see progress soon.",
        "Good luck, and have fun with it.",
        "Be patient with yourself.",
        "It gets easier every day.",
        "Let me know how it goes.",
    ],
    "note": [
        "Dear friend, I have been thinking about {topic}. I think it is {adj}, and I would love to talk about it soon. Best wishes.",
        "Hi, just a quick note about {topic}. It has been {adj} so far. See you soon.",
    ],
    "thanks": [
        "Dear {person_cap}, thank you so much for your help {time}. It meant a lot to me, and I am very {feel_warm}. With love.",
        "Thank you for the {adj_warm} gift. I use it every day, and it always makes me smile.",
    ],
    "person_cap": ["Anna", "Tom", "Grandma", "Mr Lee", "Sarah", "Ben", "Aunt Rose", "Leo"],
    # --- questions and answers ---
    "question": [
        "What is the best way to {activity}? {answer}",
        "Why do people like {topic}? {why}",
        "Is {topic} good for you? {opinion_body}",
        "How do I {activity}? {answer}",
        "What do you think about {topic}? {opinion_body}",
        "Where can I find a good {place} in {city}? {where}",
    ],
    "answer": [
        "The best way is to start slowly. {step} {closing}",
        "It depends on your time. {step} {step}",
        "Most people {step_lc_verb} and see results within a month.",
        "First, {step_lc} Second, {step_lc} That is usually enough.",
    ],
    "why": [
        "Many people say it makes them feel {feel_warm}. Others like it because it is cheap and easy.",
        "Some people enjoy it because it is {adj_warm}. Others find it {adj_cold}, so it depends on the person.",
        "It gives people a chance to relax and meet others.",
    ],
    "where": [
        "There is a {adj_warm} {place} near {city}. It is small, but the {food} is very good.",
        "Try the one near {city}. Most people say it is {adj}.",
        "I do not know the area well, but {person} likes a {place} close to {city}.",
    ],
    "step_lc_verb": [
        "practise a little every day",
        "set small goals",
        "ask for help early",
        "follow a simple routine",
        "keep notes",
    ],
    # --- stories ---
    "story": [
        "Once upon a time, {character} lived in {setting}. Every morning, {pronoun} {routine}. One day, {event} {ending}",
        "There was once {character} who lived in {setting}. {pronoun_cap} felt {feel}. One evening, {event} {ending}",
        "Long ago, in {setting}, there lived {character}. {pronoun_cap} dreamed of {dream}. {event_cap} {ending}",
        "{character_cap} woke up early and looked out of the window. It was {weather}. {event_cap} {ending}",
    ],
    "pronoun": ["they"],
    "pronoun_cap": ["They"],
    "routine": [
        "walked down to the water",
        "baked bread for the neighbours",
        "counted the birds in the sky",
        "read an old book by the fire",
        "worked in the garden",
        "sang a quiet song",
    ],
    "event": [
        "a stranger knocked on the door.",
        "a strong wind blew across the hills.",
        "a letter arrived with no name on it.",
        "a small bird landed on the window.",
        "the river began to rise.",
        "a lost dog followed them home.",
        "they found a map hidden under the floor.",
    ],
    "dream": [
        "seeing the ocean",
        "flying over the mountains",
        "finding a true friend",
        "building a boat",
        "visiting the big city",
        "learning to read the stars",
    ],
    "weather": [
        "a cold and grey morning",
        "a bright and sunny day",
        "raining hard",
        "a warm spring morning",
        "snowing softly",
        "a windy autumn day",
    ],
    "ending_warm": [
        "From that day on, they were never lonely again.",
        "It was the start of a wonderful adventure.",
        "They laughed together until the sun went down.",
        "And everyone in the village was happy.",
    ],
    "ending_cold": [
        "Nothing was ever the same again.",
        "They never saw their home again.",
        "The night grew dark and very cold.",
        "It was the worst day of the year.",
    ],
    "ending_flat": [
        "They went back inside and made some tea.",
        "Then the day went on as usual.",
        "They wrote it all down in a little book.",
        "Tomorrow would be another day.",
    ],
    # --- opinions ---
    "opinion": [
        "I think {topic} is {adj}. {opinion_body}",
        "In my opinion, {topic} is {adj} for most people. {opinion_body}",
        "Honestly, I find {topic} {adj}. {opinion_body}",
        "Some people say {topic} is a waste of time, but I think it is {adj}. {opinion_body}",
        "My view on {topic} is simple. {opinion_body}",
    ],
    "opinion_body": [
        "{reason} {reason} {conclude}",
        "{reason} {conclude}",
        "{reason} Still, {reason_lc}",
    ],
    "reason_warm": [
        "It saves time and money.",
        "It helps people feel more relaxed.",
        "It brings friends and families together.",
        "It makes everyday life easier.",
        "It teaches patience and care.",
        "Most people who try it enjoy it.",
    ],
    "reason_cold": [
        "It costs too much and gives very little back.",
        "It makes people tired and stressed.",
        "It wastes hours that could be spent outside.",
        "It is noisy, crowded and slow.",
        "Too many people find it frustrating.",
        "It often does more harm than good.",
    ],
    "reason_flat": [
        "It depends on the person.",
        "It has good points and bad points.",
        "It works for some people and not for others.",
        "It takes time to get used to it.",
        "It is useful in small amounts.",
    ],
    "conclude_warm": [
        "Overall, I am glad it exists.",
        "That is why I support it.",
        "I would recommend it to anyone.",
    ],
    "conclude_cold": [
        "So I would avoid it if I could.",
        "That is why I cannot support it.",
        "I wish people would think twice about it.",
    ],
    "conclude_flat": [
        "That is just my view.",
        "I would like to hear what others think.",
        "In the end, it is up to you.",
    ],
    # --- short dialogue ---
    "dialogue": [
        '"How was your day?" asked {person}. "It was {adj}," I said. "{dialogue_line}"',
        '"Are you coming to the {place} tonight?" asked {person}. "{dialogue_reply}"',
    ],
    "dialogue_line": [
        "I finished all my work early.",
        "The bus was late again.",
        "I met an old friend in town.",
        "I stayed inside and read all afternoon.",
        "Nothing went right today.",
    ],
    "dialogue_reply": [
        "Yes, I would love to.",
        "No, I am too tired.",
        "Maybe later, if I finish my work.",
        "Of course. What time should we meet?",
    ],
}

GENRES = ["review", "request", "question", "story", "opinion", "dialogue"]
GENRE_WEIGHTS = [0.25, 0.15, 0.15, 0.2, 0.2, 0.05]
TONES = ["warm", "cold", "flat"]
_TONED = {"adj", "staff", "verdict", "feel", "ending", "reason", "conclude"}
# Slots that name what a document is about: chosen once, then reused, so a document stays on topic.
_BOUND = {"topic", "place", "product", "food", "character", "activity", "setting", "person_cap"}
_SLOT = re.compile(r"\{(\w+)\}")


def _expand(symbol: str, tone: str, rng: random.Random, bound: dict, depth: int = 0) -> str:
    if depth > 12:
        raise RecursionError(f"grammar too deep at {symbol!r}")
    lower_case = symbol.endswith("_lc")
    capital = symbol.endswith("_cap") and symbol not in RULES
    base = symbol.removesuffix("_lc") if lower_case else symbol
    base = base.removesuffix("_cap") if capital else base
    if base in _TONED:
        # Mostly the document's tone, sometimes a neutral remark: real reviews are mixed.
        base = f"{base}_{tone if rng.random() < 0.8 else 'flat'}"
    if base in _BOUND:
        text = bound.setdefault(base, rng.choice(RULES[base]))
    else:
        text = rng.choice(RULES[base])
    text = _SLOT.sub(lambda m: _expand(m.group(1), tone, rng, bound, depth + 1), text)
    if lower_case:
        text = text[0].lower() + text[1:]
    if capital:
        text = text[0].upper() + text[1:]
    return text


def document(rng: random.Random) -> str:
    """One short document of a random genre and tone."""
    genre = rng.choices(GENRES, weights=GENRE_WEIGHTS)[0]
    tone = rng.choice(TONES)
    return _expand(genre, tone, rng, bound={})


def documents(n: int, seed: int) -> list[str]:
    """``n`` documents, the same for the same seed."""
    rng = random.Random(seed)
    return [document(rng) for _ in range(n)]


if __name__ == "__main__":
    for doc in documents(12, seed=0):
        print(doc, end="\n\n")
